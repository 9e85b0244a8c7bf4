//! Which role may read which topic (protocol.md, "Subscribing": "a role may not
//! subscribe to every topic").
//!
//! Every topic of api.md's table is readable by viewers. Custom topics under
//! `custom.admin.` are private channels of admin tools: only admins may subscribe to
//! them, and a wider pattern (`*`) held by a lower role never delivers them.

use crate::auth::Role;

/// The prefix of admin-only custom topics.
pub const ADMIN_TOPIC_PREFIX: &str = "custom.admin.";

/// The least role that may read `topic`.
pub fn required_role(topic: &str) -> Role {
    if topic.starts_with(ADMIN_TOPIC_PREFIX) {
        Role::Admin
    } else {
        Role::Viewer
    }
}

pub fn role_may_read(role: Role, topic: &str) -> bool {
    role.allows(required_role(topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_topics_need_admin() {
        assert!(role_may_read(Role::Viewer, "alerts"));
        assert!(role_may_read(Role::Viewer, "custom.orders"));
        assert!(!role_may_read(Role::Operator, "custom.admin.audit"));
        assert!(role_may_read(Role::Admin, "custom.admin.audit"));
        assert!(!role_may_read(Role::Agent, "alerts"));
    }
}
