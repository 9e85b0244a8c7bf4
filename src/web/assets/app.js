// Lookout's built-in dashboard: plain JavaScript, no build step, no third-party code.
// Reads the REST API with the user's token and follows every change live over /ws,
// resuming with `since` after a disconnect. All text from the server is inserted with
// textContent, never parsed as markup: labels and annotations are user and metric data.

const TOPICS = ["alerts", "queues", "metrics", "connection", "agents", "health", "messages"];
const FEED_MAX = 300;

const state = {
  token: localStorage.getItem("lookout.token") || "",
  identity: null,
  tab: location.hash.slice(1) || "overview",
  alerts: new Map(),
  queues: new Map(),
  feed: [],
  positions: JSON.parse(localStorage.getItem("lookout.positions") || "{}"),
  socket: null,
  retryMs: 500,
};

// ---------------------------------------------------------------- DOM helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (value !== undefined && value !== null && value !== false) el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function table(headers, rows) {
  return h("table", {}, h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))), h("tbody", {}, rows));
}

function labels(obj) {
  return h("span", { class: "labels" }, Object.entries(obj || {}).map(([k, v]) => h("code", {}, `${k}=${v}`)));
}

function when(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : d.toLocaleString();
}

function num(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  return Math.abs(v) >= 1000 ? v.toLocaleString(undefined, { maximumFractionDigits: 0 }) : +v.toFixed(3) + "";
}

function render(...nodes) {
  const view = document.getElementById("view");
  view.replaceChildren(...nodes);
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${state.token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (response.status === 401) {
    signOut("Your token was refused: " + (data?.detail || "unauthorized"));
    throw new ApiError(401, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

const get = (path) => api("GET", path);
const post = (path, body) => api("POST", path, body || {});

// ---------------------------------------------------------------- live updates

function saveOffset(topic, offset, epoch) {
  const base = topic.split(":")[0];
  const known = state.positions[base];
  if (!known || known.epoch !== epoch || known.offset < offset) {
    state.positions[base] = { offset, epoch };
    localStorage.setItem("lookout.positions", JSON.stringify(state.positions));
  }
}

function setLive(kind, title) {
  const dot = document.getElementById("live");
  dot.className = "dot " + kind;
  dot.title = title;
}

function connect() {
  if (!state.token) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(state.token)}`);
  state.socket = socket;
  setLive("wait", "connecting");
  socket.onmessage = (message) => {
    let frame;
    try { frame = JSON.parse(message.data); } catch { return; }
    onFrame(frame);
  };
  socket.onclose = (close) => {
    if (state.socket !== socket) return;
    setLive("off", `disconnected (${close.code} ${close.reason})`);
    if (close.code === 4001 || close.code === 4002 || close.code === 4003) {
      signOut(close.code === 4002 ? "Your token expired." : "Your token was refused.");
      return;
    }
    const delay = state.retryMs + Math.random() * state.retryMs;
    state.retryMs = Math.min(state.retryMs * 2, 30000);
    setTimeout(connect, delay);
  };
}

function onFrame(frame) {
  switch (frame.type) {
    case "auth_success": {
      state.identity = frame.payload;
      state.retryMs = 500;
      setLive("on", `live via ${frame.payload.server}`);
      document.getElementById("who").textContent =
        `${frame.payload.sub} · ${frame.payload.role} · ${frame.payload.tenant}`;
      const since = {};
      for (const topic of TOPICS) if (state.positions[topic]) since[topic] = state.positions[topic];
      state.socket.send(JSON.stringify({ type: "subscribe", id: "s1", payload: { topics: TOPICS, since } }));
      break;
    }
    case "subscribed":
      if (frame.payload.recovered === false) {
        // The history no longer reaches back: the REST API is the truth.
        saveOffset(frame.payload.topic, frame.payload.offset, frame.payload.epoch);
        show(state.tab);
      }
      break;
    case "event":
      saveOffset(frame.topic, frame.offset, frame.epoch);
      onEvent(frame);
      break;
    case "reconnect":
      setLive("wait", "server restarting");
      state.retryMs = Math.max(frame.payload?.after_ms || 500, 100);
      break;
    case "error":
      console.warn("lookout:", frame.payload);
      break;
  }
}

function onEvent(frame) {
  state.feed.unshift(frame);
  state.feed.length = Math.min(state.feed.length, FEED_MAX);
  if (frame.topic === "alerts" && frame.data?.id) {
    if (frame.data.deleted) state.alerts.delete(frame.data.id);
    else state.alerts.set(frame.data.id, frame.data);
    if (state.tab === "alerts" || state.tab === "overview") renderAlerts(frame.data.id);
  } else if (frame.topic.startsWith("queues") && frame.data?.queue) {
    state.queues.set(frame.data.queue, { ...state.queues.get(frame.data.queue), ...frame.data });
    if (state.tab === "queues") renderQueues(frame.data.queue);
  }
  if (state.tab === "activity") renderFeed();
}

// ---------------------------------------------------------------- views

const VIEWS = {
  overview: { title: "Overview", load: showOverview },
  alerts: { title: "Alerts", load: showAlerts },
  queues: { title: "Queues", load: showQueues },
  metrics: { title: "Metrics", load: showMetrics },
  rules: { title: "Rules", load: showRules },
  sources: { title: "Sources", load: showSources },
  channels: { title: "Channels", load: showChannels },
  activity: { title: "Live", load: showActivity },
  cluster: { title: "Cluster", load: showCluster },
};

async function show(tab) {
  state.tab = VIEWS[tab] ? tab : "overview";
  location.hash = state.tab;
  for (const button of document.querySelectorAll("nav button")) {
    button.classList.toggle("active", button.dataset.tab === state.tab);
  }
  try {
    await VIEWS[state.tab].load();
  } catch (error) {
    if (error.status === 401) return;
    render(h("p", { class: "error" }, error.status === 404 ? "This part is not available on this server." : error.message));
  }
}

async function showOverview() {
  const [overview, health] = await Promise.all([
    get("/api/v1/dashboard/overview"),
    get("/api/v1/dashboard/health").catch(() => null),
  ]);
  const cards = [];
  for (const section of overview.sections || []) {
    cards.push(h("div", { class: "card" }, h("h3", {}, section.title),
      section.error ? h("p", { class: "error" }, section.error) : summary(section.data)));
  }
  const nodes = [h("h2", {}, "Overview"), h("div", { class: "cards" }, cards)];
  if (health) nodes.push(h("h2", {}, "Health"), healthTable(health));
  render(...nodes);
}

function summary(data) {
  if (data === null || typeof data !== "object") return h("div", { class: "big" }, num(data));
  return h("div", {}, Object.entries(data).slice(0, 8).map(([k, v]) =>
    h("div", {}, h("span", { class: "muted" }, k.replaceAll("_", " ") + ": "),
      typeof v === "object" && v !== null ? JSON.stringify(v) : num(v))));
}

function healthTable(health) {
  const items = health.components || health.checks || [];
  return table(["component", "status", "response", "detail"], items.map((c) =>
    h("tr", {}, h("td", {}, c.name || c.component), h("td", { class: "state " + c.status }, c.status),
      h("td", {}, c.response_ms !== undefined && c.response_ms !== null ? `${num(c.response_ms)} ms` : ""),
      h("td", { class: "muted" }, c.error || c.detail || ""))));
}

async function showAlerts() {
  const page = await get("/api/v1/alerts?limit=200");
  state.alerts = new Map((page.items || []).map((a) => [a.id, a]));
  renderAlerts();
}

function renderAlerts(changed) {
  const open = [...state.alerts.values()].filter((a) => !a.resolved_at)
    .sort((a, b) => (b.started_at || "").localeCompare(a.started_at || ""));
  const canAct = state.identity && ["operator", "admin"].includes(state.identity.role);
  const rows = open.map((a) => h("tr", { class: a.id === changed ? "flash" : "" },
    h("td", {}, h("span", { class: "sev " + a.severity }, a.severity)),
    h("td", { class: "state " + a.state }, a.state + (a.acknowledged ? " (ack)" : "")),
    h("td", {}, a.rule_name, h("div", { class: "muted" }, a.annotations?.summary || "")),
    h("td", {}, labels(a.group_labels || a.labels)),
    h("td", {}, num(a.value), a.threshold !== null && a.threshold !== undefined ? ` / ${num(a.threshold)}` : ""),
    h("td", {}, when(a.fired_at || a.started_at)),
    h("td", {}, canAct ? actions(a) : "")));
  const view = [h("h2", {}, `Open alerts (${open.length})`),
    open.length ? table(["severity", "state", "rule", "labels", "value / threshold", "since", ""], rows)
      : h("p", { class: "muted" }, "Nothing is firing.")];
  if (state.tab === "alerts") render(...view);
}

function actions(alert) {
  const act = (path, body) => async () => {
    try { const updated = await post(`/api/v1/alerts/${alert.id}/${path}`, body?.()); if (updated?.id) state.alerts.set(updated.id, updated); renderAlerts(alert.id); }
    catch (error) { alertBox(error.message); }
  };
  return h("span", {},
    alert.acknowledged ? null : h("button", { onclick: act("acknowledge", () => ({ comment: prompt("Comment (optional)") || undefined })) }, "Ack"), " ",
    h("button", { onclick: act("snooze", () => ({ duration: "1h" })) }, "Snooze 1h"), " ",
    h("button", { onclick: act("resolve") }, "Resolve"));
}

function alertBox(message) { window.alert(message); }

async function showQueues() {
  const data = await get("/api/v1/queues");
  const items = Array.isArray(data) ? data : data.items || data.queues || [];
  state.queues = new Map(items.map((q) => [q.name || q.queue, q]));
  renderQueues();
}

function renderQueues(changed) {
  const rows = [...state.queues.entries()].sort((a, b) => (b[1].size || 0) - (a[1].size || 0)).map(([name, q]) =>
    h("tr", { class: name === changed ? "flash" : "" },
      h("td", {}, name), h("td", {}, q.kind || ""), h("td", {}, num(q.size)),
      h("td", {}, num(q.connection_count ?? q.connections)), h("td", {}, num(q.delivered)),
      h("td", {}, [q.suspended ? "suspended" : null, q.bounced ? "bounced" : null, ...(q.throttled || q.throttle || []).map((t) => t.name || t)]
        .filter(Boolean).join(", "))));
  render(h("h2", {}, `Queues (${state.queues.size})`),
    state.queues.size ? table(["queue", "kind", "size", "connections", "delivered", "flags"], rows)
      : h("p", { class: "muted" }, "No KumoMTA queues reported (add a kumomta source)."));
}

async function showMetrics() {
  const names = await get("/api/v1/metrics/names");
  const list = Array.isArray(names) ? names : names.items || names.names || [];
  const select = h("select", {}, list.map((n) => h("option", { value: n.name || n }, n.name || n)));
  const fn = h("select", {}, ["avg", "min", "max", "sum", "count", "rate", "increase", "p95"].map((f) => h("option", { value: f }, f)));
  const chart = h("div", {}, h("p", { class: "muted" }, "Pick a metric."));
  const draw = async () => {
    if (!select.value) return;
    const to = new Date(), from = new Date(to - 3600e3);
    const query = new URLSearchParams({ name: select.value, fn: fn.value, step: "60s", from: from.toISOString(), to: to.toISOString() });
    try { chart.replaceChildren(plot(await get(`/api/v1/metrics/aggregated?${query}`))); }
    catch (error) { chart.replaceChildren(h("p", { class: "error" }, error.message)); }
  };
  select.addEventListener("change", draw);
  fn.addEventListener("change", draw);
  render(h("h2", {}, "Metrics (last hour)"), h("div", { class: "toolbar" }, select, fn), chart);
  if (list.length) draw();
}

// An SVG line per series of an /aggregated answer.
function plot(data) {
  const series = data.series || data.items || [];
  const points = series.flatMap((s) => (s.points || s.values || []).map((p) => Array.isArray(p) ? p : [p.t ?? p.timestamp, p.v ?? p.value]));
  if (!points.length) return h("p", { class: "muted" }, "No data in this range.");
  const times = points.map((p) => +new Date(p[0])), values = points.map((p) => +p[1]).filter(Number.isFinite);
  const [t0, t1] = [Math.min(...times), Math.max(...times)], [v0, v1] = [Math.min(0, ...values), Math.max(...values)];
  const W = 1000, H = 240, x = (t) => 40 + ((t - t0) / Math.max(t1 - t0, 1)) * (W - 50), y = (v) => H - 20 - ((v - v0) / Math.max(v1 - v0, 1e-9)) * (H - 40);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  for (const s of series) {
    const pts = (s.points || s.values || []).map((p) => Array.isArray(p) ? p : [p.t ?? p.timestamp, p.v ?? p.value])
      .filter((p) => Number.isFinite(+p[1])).map((p) => `${x(+new Date(p[0]))},${y(+p[1])}`).join(" ");
    const line = document.createElementNS(svg.namespaceURI, "polyline");
    line.setAttribute("points", pts);
    svg.append(line);
  }
  for (const [v, label] of [[v1, num(v1)], [v0, num(v0)]]) {
    const text = document.createElementNS(svg.namespaceURI, "text");
    text.setAttribute("x", 2); text.setAttribute("y", y(v) + 4); text.textContent = label;
    svg.append(text);
  }
  return svg;
}

async function showRules() {
  const page = await get("/api/v1/rules?limit=500");
  const isAdmin = state.identity?.role === "admin";
  const rows = (page.items || []).map((r) => {
    const toggle = async () => {
      try { await api("PATCH", `/api/v1/rules/${r.id}`, { enabled: !r.enabled }); showRules(); } catch (e) { alertBox(e.message); }
    };
    return h("tr", {}, h("td", {}, r.name, h("div", { class: "muted" }, r.description || "")),
      h("td", {}, h("span", { class: "sev " + r.severity }, r.severity)),
      h("td", {}, `${r.condition?.operator ?? ""} ${num(r.condition?.threshold)}`), h("td", {}, r.for || ""),
      h("td", {}, r.enabled ? "enabled" : "disabled", " ", isAdmin ? h("button", { onclick: toggle }, r.enabled ? "Disable" : "Enable") : ""));
  });
  render(h("h2", {}, "Rules"), table(["rule", "severity", "condition", "for", ""], rows));
}

async function showSources() {
  const page = await get("/api/v1/sources?limit=500");
  const rows = (page.items || []).map((s) => h("tr", {},
    h("td", {}, s.name || s.id), h("td", {}, s.kind), h("td", {}, s.url || s.base_url || s.config?.url || ""),
    h("td", { class: "state " + (s.last_outcome?.ok === false || s.last_outcome?.error ? "down" : "up") },
      s.last_outcome?.error || (s.last_outcome ? "ok" : "not polled yet")),
    h("td", {}, when(s.last_outcome?.at || s.last_outcome?.time))));
  render(h("h2", {}, "Sources"), table(["name", "kind", "target", "last outcome", "at"], rows));
}

async function showChannels() {
  const page = await get("/api/v1/channels?limit=500");
  const rows = (page.items || []).map((c) => h("tr", {}, h("td", {}, c.name), h("td", {}, c.type || c.kind),
    h("td", {}, c.enabled === false ? "disabled" : "enabled")));
  render(h("h2", {}, "Notification channels"), table(["name", "type", ""], rows));
}

async function showActivity() {
  if (!state.feed.length) {
    const page = await get("/api/v1/dashboard/activity?limit=100").catch(() => ({ items: [] }));
    state.feed = (page.items || []).map((i) => ({ topic: i.topic, event: i.event, ts: i.timestamp, data: i.data, offset: i.offset }));
  }
  renderFeed();
}

function renderFeed() {
  render(h("h2", {}, "Live events"), h("ul", { class: "feed" }, state.feed.map((e) =>
    h("li", {}, `${when(e.ts)}  ${e.topic} #${e.offset}  ${e.event}  ${JSON.stringify(e.data)}`))));
}

async function showCluster() {
  const view = await get("/api/v1/cluster");
  render(h("h2", {}, `Cluster (${view.mode})`),
    table(["replica", "version", "address", "started", "last seen"], view.replicas.map((r) => h("tr", {},
      h("td", {}, r.id + (r.id === view.replica ? " (this one)" : "")), h("td", {}, r.version), h("td", {}, r.address),
      h("td", {}, when(r.started_at)), h("td", {}, when(r.last_seen))))),
    h("h2", {}, "Leader leases"),
    table(["lease", "holder", "token", "expires in"], view.leases.map((l) => h("tr", {},
      h("td", {}, l.name), h("td", {}, l.holder || "–"), h("td", {}, l.token ?? "–"),
      h("td", {}, l.expires_in_ms !== null && l.expires_in_ms !== undefined ? `${(l.expires_in_ms / 1000).toFixed(1)} s` : "–")))));
}

// ---------------------------------------------------------------- sign in / out

function signOut(reason) {
  state.token = "";
  localStorage.removeItem("lookout.token");
  const socket = state.socket;
  state.socket = null;
  socket?.close(1000);
  setLive("off", "signed out");
  document.getElementById("who").textContent = "";
  document.getElementById("login-error").textContent = reason || "";
  document.getElementById("login").showModal();
}

function start() {
  document.getElementById("tabs").replaceChildren(...Object.entries(VIEWS).map(([id, v]) =>
    h("button", { type: "button", "data-tab": id, onclick: () => show(id) }, v.title)));
  document.getElementById("logout").addEventListener("click", () => signOut());
  document.getElementById("login-form").addEventListener("submit", () => {
    state.token = document.getElementById("token").value.trim();
    localStorage.setItem("lookout.token", state.token);
    connect();
    show(state.tab);
  });
  // A token may be handed over in the fragment (#token=…), which never reaches a server log.
  const handed = new URLSearchParams(location.hash.slice(1)).get("token");
  if (handed) {
    state.token = handed;
    localStorage.setItem("lookout.token", handed);
    history.replaceState(null, "", location.pathname + "#overview");
    state.tab = "overview";
  }
  if (!state.token) return signOut();
  connect();
  show(state.tab);
}

start();
