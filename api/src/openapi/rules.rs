//! Text rules the server enforces, as JSON Schema for `#[schema(schema_with = ...)]` on the
//! fields that share them. Patterns are ECMA-262 (what OpenAPI tools evaluate). Add a function
//! here when a rule is shared by several fields; a rule of one field is a `#[schema(...)]`
//! attribute on that field.

use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// No control characters (Unicode Cc: C0, DEL, C1).
pub const CONTROL: &str = "\\x00-\\x1f\\x7f-\\x9f";
/// Multi-line text: no control characters except tab, newline and carriage return.
pub const MULTILINE_CONTROL: &str = "\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f";

/// One line without surrounding whitespace (the server trims, then counts).
pub fn one_line_pattern() -> String {
    format!("^[^\\s{CONTROL}](?:[^{CONTROL}]*[^\\s{CONTROL}])?$")
}

/// Any lines, possibly empty.
pub fn text_pattern() -> String {
    format!("^[^{MULTILINE_CONTROL}]*$")
}

/// Any lines with at least one non-whitespace character (whitespace-only text is no text).
pub fn content_pattern() -> String {
    format!("^[^{MULTILINE_CONTROL}]*[^\\s{MULTILINE_CONTROL}][^{MULTILINE_CONTROL}]*$")
}

/// A string schema with a description.
pub fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

/// A space title: one line, 3–200 characters after trimming.
pub fn title() -> Object {
    string(
        "3–200 characters after trimming surrounding whitespace (`invalid_title`); one line, \
         no control characters.",
    )
    .min_length(Some(3))
    .max_length(Some(200))
    .pattern(Some(one_line_pattern()))
    .build()
}
