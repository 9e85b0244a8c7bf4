//! The names kumod gives its queues and services, taken apart.
//!
//! - Scheduled queues: `campaign:tenant@domain!routing_domain`, every part but the domain
//!   optional (kumod's `QueueNameComponents`).
//! - Ready queues: `source->site@protocol`, e.g.
//!   `unspecified->(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com@smtp_client`; older kumod
//!   versions leave out `@protocol`. The site is kumod's factored MX name and may hold regex
//!   characters.
//! - The `service` label of kumod's metrics: `smtp_client` for the whole node, or
//!   `smtp_client:<ready queue name>` for one ready queue; `esmtp_listener` or
//!   `esmtp_listener:127.0.0.1:25` on the receiving side.

/// The parts of a scheduled queue name. Parsing never fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueName {
    pub campaign: Option<String>,
    pub tenant: Option<String>,
    pub domain: String,
    pub routing_domain: Option<String>,
}

impl QueueName {
    /// Splits `campaign:tenant@domain!routing_domain` the way kumod does: the first `@` ends
    /// the `campaign:tenant` prefix, the first `:` in that prefix ends the campaign, and the
    /// first `!` after the `@` starts the routing domain. Empty parts are absent. A name whose
    /// domain would be empty is taken whole as the domain.
    pub fn parse(name: &str) -> Self {
        let (prefix, rest) = match name.split_once('@') {
            Some((prefix, rest)) => (Some(prefix), rest),
            None => (None, name),
        };
        let (domain, routing_domain) = match rest.split_once('!') {
            Some((domain, routing)) => (domain, non_empty(routing)),
            None => (rest, None),
        };
        if domain.is_empty() {
            return Self {
                campaign: None,
                tenant: None,
                domain: name.to_string(),
                routing_domain: None,
            };
        }
        let (campaign, tenant) = match prefix {
            Some(prefix) => match prefix.split_once(':') {
                Some((campaign, tenant)) => (non_empty(campaign), non_empty(tenant)),
                None => (None, non_empty(prefix)),
            },
            None => (None, None),
        };
        Self {
            campaign,
            tenant,
            domain: domain.to_string(),
            routing_domain,
        }
    }
}

/// The parts of a ready queue name `source->site@protocol`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyQueueName {
    /// The whole name, as used by kumod's admin API (ready-q-states keys, ready-queue
    /// suspensions).
    pub name: String,
    /// The egress source.
    pub source: String,
    /// The destination site (factored MX host names).
    pub site: String,
    /// The delivery protocol (`smtp_client`), when the name carries one.
    pub protocol: Option<String>,
}

impl ReadyQueueName {
    /// Returns `None` for a name without `->`, which cannot be a ready queue. Only the first
    /// `->` separates; a protocol is split off only if what follows the last `@` looks like
    /// one (letters, digits, `_`), so that an `@` inside a site name stays in the site.
    pub fn parse(name: &str) -> Option<Self> {
        let (source, rest) = name.split_once("->")?;
        let (site, protocol) = match rest.rsplit_once('@') {
            Some((site, protocol))
                if !protocol.is_empty()
                    && protocol
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                (site, Some(protocol.to_string()))
            }
            _ => (rest, None),
        };
        Some(Self {
            name: name.to_string(),
            source: source.to_string(),
            site: site.to_string(),
            protocol,
        })
    }
}

/// What a kumod `service` label designates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceLabel {
    /// A service as a whole, e.g. `smtp_client` or `esmtp_listener` (also a missing or empty
    /// label). Node totals come only from these, so that nothing is counted twice.
    Aggregate { service: String },
    /// One ready queue of a delivery service: `smtp_client:source->site@smtp_client`.
    ReadyQueue {
        service: String,
        queue: ReadyQueueName,
    },
    /// Any other part of a service, e.g. the listener `esmtp_listener:127.0.0.1:25`.
    Instance { service: String, instance: String },
}

impl ServiceLabel {
    /// Splits at the first `:`; service names never contain one, ready queue names and
    /// listener addresses may.
    pub fn parse(label: &str) -> Self {
        match label.split_once(':') {
            None => Self::Aggregate {
                service: label.to_string(),
            },
            Some((service, instance)) => match ReadyQueueName::parse(instance) {
                Some(queue) => Self::ReadyQueue {
                    service: service.to_string(),
                    queue,
                },
                None => Self::Instance {
                    service: service.to_string(),
                    instance: instance.to_string(),
                },
            },
        }
    }
}

fn non_empty(part: &str) -> Option<String> {
    (!part.is_empty()).then(|| part.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn queue(
        campaign: Option<&str>,
        tenant: Option<&str>,
        domain: &str,
        routing: Option<&str>,
    ) -> QueueName {
        QueueName {
            campaign: campaign.map(str::to_string),
            tenant: tenant.map(str::to_string),
            domain: domain.to_string(),
            routing_domain: routing.map(str::to_string),
        }
    }

    #[test]
    fn scheduled_queue_names() {
        let cases = [
            ("gmail.com", queue(None, None, "gmail.com", None)),
            (
                "tenant@example.com",
                queue(None, Some("tenant"), "example.com", None),
            ),
            (
                "campaign:tenant@example.com",
                queue(Some("campaign"), Some("tenant"), "example.com", None),
            ),
            (
                "campaign:@example.com",
                queue(Some("campaign"), None, "example.com", None),
            ),
            (
                "example.com!routing.example",
                queue(None, None, "example.com", Some("routing.example")),
            ),
            (
                "campaign:tenant@example.com!routing.example",
                queue(
                    Some("campaign"),
                    Some("tenant"),
                    "example.com",
                    Some("routing.example"),
                ),
            ),
            (
                "campaign_name:tenant_name@example.com",
                queue(
                    Some("campaign_name"),
                    Some("tenant_name"),
                    "example.com",
                    None,
                ),
            ),
            ("a:b:c@d.com", queue(Some("a"), Some("b:c"), "d.com", None)),
            ("t@d.com!", queue(None, Some("t"), "d.com", None)),
            ("t@", queue(None, None, "t@", None)),
            ("@", queue(None, None, "@", None)),
            ("", queue(None, None, "", None)),
            ("!r.com", queue(None, None, "!r.com", None)),
        ];
        for (name, expected) in cases {
            assert_eq!(QueueName::parse(name), expected, "{name}");
        }
    }

    #[test]
    fn service_labels() {
        let gmail = "unspecified->(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com@smtp_client";
        assert_eq!(
            ServiceLabel::parse(&format!("smtp_client:{gmail}")),
            ServiceLabel::ReadyQueue {
                service: "smtp_client".into(),
                queue: ReadyQueueName {
                    name: gmail.into(),
                    source: "unspecified".into(),
                    site: "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com".into(),
                    protocol: Some("smtp_client".into()),
                },
            }
        );
        assert_eq!(
            ServiceLabel::parse("smtp_client"),
            ServiceLabel::Aggregate {
                service: "smtp_client".into()
            }
        );
        assert_eq!(
            ServiceLabel::parse(""),
            ServiceLabel::Aggregate { service: "".into() }
        );
        assert_eq!(
            ServiceLabel::parse("esmtp_listener:127.0.0.1:25"),
            ServiceLabel::Instance {
                service: "esmtp_listener".into(),
                instance: "127.0.0.1:25".into()
            }
        );
        assert_eq!(
            ServiceLabel::parse("esmtp_listener:[::1]:25"),
            ServiceLabel::Instance {
                service: "esmtp_listener".into(),
                instance: "[::1]:25".into()
            }
        );
        // Older kumod: no protocol suffix.
        let old = ServiceLabel::parse("smtp_client:source2->loopback.dummy-mx.wezfurlong.org");
        let ServiceLabel::ReadyQueue { queue, .. } = old else {
            panic!("ready queue expected")
        };
        assert_eq!(queue.site, "loopback.dummy-mx.wezfurlong.org");
        assert_eq!(queue.protocol, None);
    }

    #[test]
    fn ready_queue_names() {
        let parsed =
            ReadyQueueName::parse("pool:a->mx.example.com@smtp_client").expect("ready queue");
        assert_eq!(
            (parsed.source.as_str(), parsed.site.as_str()),
            ("pool:a", "mx.example.com")
        );
        // Only the first `->` separates source and site.
        let parsed = ReadyQueueName::parse("s->a->b@smtp_client").expect("ready queue");
        assert_eq!(
            (parsed.source.as_str(), parsed.site.as_str()),
            ("s", "a->b")
        );
        // Something that is not a protocol stays part of the site.
        let parsed = ReadyQueueName::parse("s->user@mx.example.com").expect("ready queue");
        assert_eq!(
            (parsed.site.as_str(), parsed.protocol),
            ("user@mx.example.com", None)
        );
        assert_eq!(ReadyQueueName::parse("gmail.com"), None);
    }

    proptest! {
        #[test]
        fn kumod_style_names_round_trip(
            campaign in proptest::option::of("[a-z_]{1,8}"),
            tenant in proptest::option::of("[a-z_]{1,8}"),
            domain in "[a-z.]{1,12}",
            routing in proptest::option::of("[a-z.]{1,12}"),
        ) {
            // kumod's QueueNameComponents::format
            let mut name = match (&campaign, &tenant) {
                (Some(c), Some(t)) => format!("{c}:{t}@"),
                (Some(c), None) => format!("{c}:@"),
                (None, Some(t)) => format!("{t}@"),
                (None, None) => String::new(),
            };
            name.push_str(&domain);
            if let Some(r) = &routing {
                name.push('!');
                name.push_str(r);
            }
            let expected = QueueName { campaign, tenant, domain, routing_domain: routing };
            prop_assert_eq!(QueueName::parse(&name), expected);
        }

        #[test]
        fn never_panics(name in "\\PC*") {
            let parsed = QueueName::parse(&name);
            prop_assert!(!parsed.domain.is_empty() || name.is_empty());
            ServiceLabel::parse(&name);
            ReadyQueueName::parse(&name);
        }
    }
}
