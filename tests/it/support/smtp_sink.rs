//! A small SMTP server for tests: it accepts mail on 127.0.0.1 and remembers it.
//!
//! It speaks enough SMTP for lettre's plain (no TLS) transport: EHLO/HELO, AUTH PLAIN and
//! AUTH LOGIN (any credentials are accepted and recorded), MAIL, RCPT, DATA with
//! dot-unstuffing, RSET, NOOP and QUIT. [`SmtpSink::fail_next`] makes it refuse the next
//! messages with a chosen reply, so tests can drive retries and dead letters.
//!
//! Each connection runs in its own task; dropping the sink stops the listener and every
//! connection.
#![allow(dead_code)] // Each test binary uses a different part of the support code.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// Largest message accepted (advertised as SIZE).
const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// Longest command line; RFC 5321 allows 512, generous for AUTH lines.
const MAX_LINE_BYTES: usize = 16 * 1024;

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The MAIL FROM address, without angle brackets.
    pub from: String,
    /// The RCPT TO addresses, in order.
    pub to: Vec<String>,
    /// The message (headers and body) with CRLF line endings, dot-unstuffed, without the
    /// terminating `.` line.
    pub data: String,
    /// `(user, password)` if the client authenticated on this connection.
    pub auth: Option<(String, String)>,
}

/// A running sink; see the module doc.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    // A std mutex: it is never held across an await.
    messages: Mutex<Vec<ReceivedMail>>,
    /// Replies to give, in order, instead of accepting the next messages.
    failures: Mutex<VecDeque<(u16, String)>>,
    /// How many messages were refused because of `failures`.
    refused: Mutex<usize>,
    arrived: Notify,
}

impl SmtpSink {
    /// Binds 127.0.0.1 on a free port and starts accepting connections.
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port for the SMTP sink");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared::default());
        let accept_task = tokio::spawn(accept_loop(listener, shared.clone()));
        SmtpSink {
            addr,
            shared,
            accept_task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every message accepted so far.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        lock(&self.shared.messages).clone()
    }

    /// How many messages were refused by [`fail_next`](Self::fail_next).
    pub fn refused(&self) -> usize {
        *lock(&self.shared.refused)
    }

    /// Refuses the next `count` messages with `code text` (for example `451 4.3.0 Try
    /// again later`) in answer to the end of DATA, where real servers refuse after
    /// reading the message.
    pub fn fail_next(&self, count: usize, code: u16, text: &str) {
        let mut failures = lock(&self.shared.failures);
        failures.extend(std::iter::repeat_n((code, text.to_string()), count));
    }

    /// Waits until at least `count` messages have arrived or `timeout` passes, and returns
    /// what has arrived (check its length: it is shorter on timeout).
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before looking, so a message that lands in between still
            // wakes us.
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.messages();
            }
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a JoinSet), so they stop with it.
        self.accept_task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread must not hide the sink's data from the rest of the test.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, shared.clone()));
                }
                // Out of file descriptors, say: let other tasks run before trying again.
                Err(_) => tokio::task::yield_now().await,
            },
            // Reap finished connections so the set does not grow for ever.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The state of one SMTP session.
#[derive(Default)]
struct Session {
    auth: Option<(String, String)>,
    from: Option<String>,
    to: Vec<String>,
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    // An I/O error just ends this connection; the client sees it as a dropped connection.
    let _ = session(stream, &shared).await;
}

async fn session(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut session = Session::default();
    write
        .write_all(b"220 localhost ESMTP lookout-smtp-sink\r\n")
        .await?;
    loop {
        let Some(line) = read_line(&mut reader).await? else {
            return Ok(());
        };
        let (verb, arg) = match line.split_once(' ') {
            Some((verb, arg)) => (verb.to_ascii_uppercase(), arg.trim().to_string()),
            None => (line.trim().to_ascii_uppercase(), String::new()),
        };
        let reply: String = match verb.as_str() {
            "EHLO" => format!(
                "250-localhost\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SIZE {MAX_MESSAGE_BYTES}\r\n"
            ),
            "HELO" => "250 localhost\r\n".into(),
            "AUTH" => match authenticate(&arg, &mut reader, &mut write).await? {
                Some(credentials) => {
                    session.auth = Some(credentials);
                    "235 2.7.0 Authentication successful\r\n".into()
                }
                None => "535 5.7.8 Authentication credentials invalid\r\n".into(),
            },
            "MAIL" => match parse_path(&arg, "FROM:") {
                Some(from) => {
                    session.from = Some(from);
                    session.to.clear();
                    "250 2.1.0 Ok\r\n".into()
                }
                None => "501 5.5.4 Syntax: MAIL FROM:<address>\r\n".into(),
            },
            "RCPT" => match (&session.from, parse_path(&arg, "TO:")) {
                (None, _) => "503 5.5.1 MAIL first\r\n".into(),
                (Some(_), Some(to)) => {
                    session.to.push(to);
                    "250 2.1.5 Ok\r\n".into()
                }
                (Some(_), None) => "501 5.5.4 Syntax: RCPT TO:<address>\r\n".into(),
            },
            "DATA" if session.to.is_empty() => "503 5.5.1 RCPT first\r\n".into(),
            "DATA" => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let Some(data) = read_data(&mut reader).await? else {
                    return Ok(());
                };
                let from = session.from.take().unwrap_or_default();
                let to = std::mem::take(&mut session.to);
                deliver(shared, data, from, to, session.auth.clone())
            }
            "RSET" => {
                session.from = None;
                session.to.clear();
                "250 2.0.0 Ok\r\n".into()
            }
            "NOOP" => "250 2.0.0 Ok\r\n".into(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => "500 5.5.2 Command not recognized\r\n".into(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

/// Accepts or refuses a complete message, and returns the reply to the end of DATA.
fn deliver(
    shared: &Shared,
    data: Option<String>,
    from: String,
    to: Vec<String>,
    auth: Option<(String, String)>,
) -> String {
    let Some(data) = data else {
        return "552 5.3.4 Message too big\r\n".into();
    };
    if let Some((code, text)) = lock(&shared.failures).pop_front() {
        *lock(&shared.refused) += 1;
        return format!("{code} {text}\r\n");
    }
    lock(&shared.messages).push(ReceivedMail {
        from,
        to,
        data,
        auth,
    });
    shared.arrived.notify_waiters();
    "250 2.0.0 Ok: queued\r\n".into()
}

/// `AUTH PLAIN [initial]` or `AUTH LOGIN [initial]`; `None` when the exchange is malformed.
async fn authenticate<R, W>(
    arg: &str,
    reader: &mut BufReader<R>,
    write: &mut W,
) -> std::io::Result<Option<(String, String)>>
where
    R: AsyncRead + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let (mechanism, initial) = match arg.split_once(' ') {
        Some((mechanism, initial)) => (
            mechanism.to_ascii_uppercase(),
            Some(initial.trim().to_string()),
        ),
        None => (arg.to_ascii_uppercase(), None),
    };
    let mut ask = async |prompt: &str| -> std::io::Result<Option<String>> {
        write
            .write_all(format!("334 {prompt}\r\n").as_bytes())
            .await?;
        read_line(reader).await
    };
    match mechanism.as_str() {
        "PLAIN" => {
            let response = match initial {
                Some(initial) => initial,
                None => match ask("").await? {
                    Some(line) => line,
                    None => return Ok(None),
                },
            };
            // authzid \0 authcid \0 password
            let decoded = decode(&response).unwrap_or_default();
            let mut parts = decoded.split('\0');
            Ok(match (parts.next(), parts.next(), parts.next()) {
                (Some(_), Some(user), Some(pass)) => Some((user.to_string(), pass.to_string())),
                _ => None,
            })
        }
        "LOGIN" => {
            let user = match initial {
                Some(initial) => Some(initial),
                None => ask("VXNlcm5hbWU6").await?, // "Username:"
            };
            let pass = ask("UGFzc3dvcmQ6").await?; // "Password:"
            Ok(
                match (
                    user.as_deref().and_then(decode),
                    pass.as_deref().and_then(decode),
                ) {
                    (Some(user), Some(pass)) => Some((user, pass)),
                    _ => None,
                },
            )
        }
        _ => Ok(None),
    }
}

fn decode(text: &str) -> Option<String> {
    let bytes = STANDARD.decode(text.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

/// `FROM:<a@b> SIZE=…` → `a@b` (also without brackets, and `<>` for bounces).
fn parse_path(arg: &str, keyword: &str) -> Option<String> {
    let rest = arg
        .get(..keyword.len())
        .filter(|k| k.eq_ignore_ascii_case(keyword))?;
    let rest = arg[rest.len()..].trim_start();
    if let Some(inner) = rest.strip_prefix('<') {
        return inner.split_once('>').map(|(path, _)| path.to_string());
    }
    rest.split_whitespace().next().map(str::to_string)
}

/// One command line without its line ending; `None` at end of stream.
async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let read = (&mut *reader)
        .take(MAX_LINE_BYTES as u64)
        .read_until(b'\n', &mut buf)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    let line = String::from_utf8_lossy(&buf);
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
}

/// The message after `354`, up to the lone `.` line, dot-unstuffed. `Ok(Some(None))` when it
/// was too big (it is still read to the end so the session stays in step); `Ok(None)` when
/// the client hung up.
async fn read_data<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> std::io::Result<Option<Option<String>>> {
    let mut data = Vec::new();
    let mut too_big = false;
    loop {
        let mut line = Vec::new();
        // Lines longer than the bound arrive in pieces, which only matters to a test that
        // sends a 16 KiB line starting with a dot.
        let mut limited = (&mut *reader).take(MAX_LINE_BYTES as u64);
        if limited.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        if line == b".\r\n" || line == b".\n" {
            break;
        }
        // RFC 5321 §4.5.2: a leading dot was doubled by the client.
        let line = line.strip_prefix(b".").unwrap_or(&line);
        if data.len() + line.len() > MAX_MESSAGE_BYTES {
            too_big = true;
        } else {
            data.extend_from_slice(line);
        }
    }
    Ok(Some(
        (!too_big).then(|| String::from_utf8_lossy(&data).into_owned()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    fn transport(
        sink: &SmtpSink,
        credentials: Option<(&str, &str)>,
    ) -> AsyncSmtpTransport<Tokio1Executor> {
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1").port(sink.port());
        if let Some((user, pass)) = credentials {
            builder = builder.credentials(Credentials::new(user.into(), pass.into()));
        }
        builder.build()
    }

    fn message(subject: &str, body: &str) -> Message {
        Message::builder()
            .from("Lookout <lookout@example.com>".parse().unwrap())
            .to("ops@example.com".parse().unwrap())
            .cc("oncall@example.com".parse().unwrap())
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .unwrap()
    }

    #[tokio::test]
    async fn records_messages_with_and_without_credentials() {
        let sink = SmtpSink::start().await;
        transport(&sink, None)
            .send(message("first", "hello\n.leading dot\n..two dots\n"))
            .await
            .unwrap();
        transport(&sink, Some(("alice", "s3cret")))
            .send(message("second", "bye\n"))
            .await
            .unwrap();

        let mails = sink.wait_for(2, Duration::from_secs(5)).await;
        assert_eq!(mails.len(), 2);
        assert_eq!(mails[0].from, "lookout@example.com");
        assert_eq!(mails[0].to, ["ops@example.com", "oncall@example.com"]);
        assert_eq!(mails[0].auth, None);
        assert!(
            mails[0].data.contains("Subject: first\r\n"),
            "{}",
            mails[0].data
        );
        assert!(
            mails[0].data.contains("\r\n.leading dot\r\n..two dots\r\n"),
            "{}",
            mails[0].data
        );
        assert!(!mails[0].data.ends_with("\r\n.\r\n"));
        assert_eq!(
            mails[1].auth,
            Some(("alice".to_string(), "s3cret".to_string()))
        );
        assert!(mails[1].data.contains("Subject: second\r\n"));
    }

    #[tokio::test]
    async fn refuses_the_next_messages_when_told_to() {
        let sink = SmtpSink::start().await;
        sink.fail_next(1, 451, "4.3.0 Try again later");
        let smtp = transport(&sink, None);
        let err = smtp.send(message("refused", "x\n")).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert_eq!(
            err.status().map(|code| code.to_string()),
            Some("451".to_string())
        );
        assert_eq!(sink.refused(), 1);
        assert!(sink.messages().is_empty());

        smtp.send(message("retried", "x\n")).await.unwrap();
        let mails = sink.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(mails.len(), 1);
        assert!(mails[0].data.contains("Subject: retried\r\n"));
    }

    #[tokio::test]
    async fn speaks_auth_login_and_the_small_commands_by_hand() {
        let sink = SmtpSink::start().await;
        let stream = TcpStream::connect(sink.addr()).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut expect = async |send: &str, reply_prefix: &str| {
            if !send.is_empty() {
                write
                    .write_all(format!("{send}\r\n").as_bytes())
                    .await
                    .unwrap();
            }
            let line = read_line(&mut reader).await.unwrap().unwrap();
            assert!(line.starts_with(reply_prefix), "{send:?} got {line:?}");
            // Skip the rest of a multi-line reply.
            let mut line = line;
            while line.as_bytes().get(3) == Some(&b'-') {
                line = read_line(&mut reader).await.unwrap().unwrap();
            }
        };
        expect("", "220").await;
        expect("EHLO test", "250-localhost").await;
        expect("NOOP", "250").await;
        expect("RCPT TO:<a@b>", "503").await;
        expect("AUTH LOGIN", "334 VXNlcm5hbWU6").await;
        expect(&STANDARD.encode("bob"), "334 UGFzc3dvcmQ6").await;
        expect(&STANDARD.encode("pw"), "235").await;
        expect("MAIL FROM:<>", "250").await;
        expect("RSET", "250").await;
        expect("DATA", "503").await;
        expect("MAIL FROM:<x@y> BODY=8BITMIME", "250").await;
        expect("RCPT TO:<z@w>", "250").await;
        expect("DATA", "354").await;
        expect("Subject: hi\r\n\r\n..x\r\n.", "250").await;
        expect("BOGUS", "500").await;
        expect("QUIT", "221").await;

        let mails = sink.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(
            mails,
            [ReceivedMail {
                from: "x@y".into(),
                to: vec!["z@w".into()],
                data: "Subject: hi\r\n\r\n.x\r\n".into(),
                auth: Some(("bob".into(), "pw".into())),
            }]
        );
    }

    #[tokio::test]
    async fn wait_for_returns_what_arrived_when_time_runs_out() {
        let sink = SmtpSink::start().await;
        let mails = sink.wait_for(1, Duration::from_millis(50)).await;
        assert!(mails.is_empty());
    }
}
