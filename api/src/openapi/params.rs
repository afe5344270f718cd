//! Path parameters shared by many operations: `params(SpacePath)`, `params(MessagePath)`.
#![allow(dead_code)] // Only their `IntoParams` implementations are used.

use utoipa::IntoParams;
use uuid::Uuid;

/// `{spaceId}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct SpacePath {
    /// The space's id (a UUID). A value that is not a UUID gives 404 `not_found`.
    pub space_id: Uuid,
}

/// `{spaceId}` and `{messageId}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct MessagePath {
    /// The space's id (a UUID). A value that is not a UUID gives 404 `not_found`.
    pub space_id: Uuid,
    /// The message's id (a UUID). A value that is not a UUID gives 404 `not_found`.
    pub message_id: Uuid,
}
