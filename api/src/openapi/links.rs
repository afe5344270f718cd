//! Links that several operations' answers share (Schemathesis's stateful phase follows them):
//! `modifiers(&SOME_LINKS)` on a route module's `Doc` adds them to one response.

use utoipa::openapi::RefOr;
use utoipa::openapi::link::LinkBuilder;

/// Adds the links of a new message (`{space_id, message_id}` in the body) to the `status`
/// response of `POST path`.
pub struct MessageLinks {
    pub path: &'static str,
    pub status: &'static str,
}

/// `(link name, operationId, description)` of what a new message leads to.
const MESSAGE_LINKS: &[(&str, &str, &str)] = &[
    ("GetMessageV1", "getMessageV1", "The new message."),
    ("EditMessageV1", "editMessageV1", "Edit the new message."),
    (
        "RedactMessageV1",
        "redactMessageV1",
        "Redact the new message.",
    ),
    (
        "MessageHistoryV1",
        "messageHistoryV1",
        "The new message's history.",
    ),
    ("ThreadV1", "threadV1", "The new message's replies."),
    (
        "SetReactionV1",
        "setReactionV1",
        "React to the new message.",
    ),
    (
        "RemoveReactionV1",
        "removeReactionV1",
        "Remove a reaction from the new message.",
    ),
    (
        "ToggleAppreciation",
        "toggleAppreciation",
        "Appreciate the new message.",
    ),
    ("DeleteMessage", "deleteMessage", "Delete the new message."),
];

impl utoipa::Modify for MessageLinks {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let Some(RefOr::T(response)) = super::post_mut(doc, self.path)
            .and_then(|op| op.responses.responses.get_mut(self.status))
        else {
            return;
        };
        for (name, operation, description) in MESSAGE_LINKS {
            let link = LinkBuilder::new()
                .operation_id(*operation)
                .description(*description)
                .parameter("spaceId", "$response.body#/space_id")
                .parameter("messageId", "$response.body#/message_id")
                .build();
            response.links.insert((*name).into(), RefOr::T(link));
        }
        let list = LinkBuilder::new()
            .operation_id("listMessages")
            .description("The space the message was posted in.")
            .parameter("spaceId", "$response.body#/space_id")
            .build();
        response.links.insert("ListMessages".into(), RefOr::T(list));
    }
}
