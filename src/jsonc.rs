//! The JSON dialect of `devcontainer.json` and of Feature and Template metadata: JSON with
//! comments and trailing commas (VS Code's "JSONC"), and object keys without quotes, as the
//! files have always been read here. Nothing else of JSON5: a missing comma, a single-quoted
//! string or a hexadecimal number is an error at its `line:column`.

use jsonc_parser::ParseOptions;

/// The options every JSONC read in this crate parses with.
pub fn options() -> ParseOptions {
    ParseOptions {
        allow_comments: true,
        allow_loose_object_property_names: true,
        allow_trailing_commas: true,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    }
}
