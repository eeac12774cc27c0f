//! The syntax of `Sec-WebSocket-Extensions` (RFC 6455 §9.1): parsing a
//! client's offers or a server's answer into [`ExtensionOffer`]s, and writing
//! them back. Only the syntax lives here; what an extension's parameters mean
//! (permessage-deflate's window sizes, say) is the extension's business.
//!
//! ```text
//! extension-list  = 1#extension
//! extension       = extension-token *( ";" extension-param )
//! extension-param = token [ "=" ( token / quoted-string ) ]
//! ```
//!
//! A quoted value must be a token once unescaped, as §9.1 requires. Optional
//! whitespace is accepted around `,`, `;` and `=`, and empty list elements
//! are ignored (RFC 9110 §5.6.1). A header sent on several lines means the
//! same as one line with the values joined by commas.

use std::fmt;

use http::header::{HeaderMap, SEC_WEBSOCKET_EXTENSIONS};

use super::headers::{is_tchar, is_token};

/// One extension in a `Sec-WebSocket-Extensions` header: a client's offer
/// or the server's acceptance of one, with its parameters in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtensionOffer {
    /// The extension's name, e.g. `permessage-deflate`.
    pub name: String,
    /// Its parameters, in the order they were written.
    pub params: Vec<ExtensionParam>,
}

/// One parameter of an extension: `name` alone or `name=value`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtensionParam {
    /// The parameter's name, e.g. `client_max_window_bits`.
    pub name: String,
    /// Its value, unquoted and unescaped, or `None` when written alone.
    pub value: Option<String>,
}

impl ExtensionOffer {
    /// An offer of the extension `name` with no parameters.
    ///
    /// ```
    /// use weft_proto::handshake::ExtensionOffer;
    /// let offer = ExtensionOffer::new("permessage-deflate")
    ///     .with_param("client_max_window_bits", None)
    ///     .with_param("server_max_window_bits", Some("10"));
    /// assert_eq!(
    ///     offer.to_string(),
    ///     "permessage-deflate; client_max_window_bits; server_max_window_bits=10"
    /// );
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        ExtensionOffer {
            name: name.into(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter, with or without a value.
    pub fn with_param(mut self, name: impl Into<String>, value: Option<&str>) -> Self {
        self.params.push(ExtensionParam {
            name: name.into(),
            value: value.map(str::to_owned),
        });
        self
    }

    /// The first parameter called `name` (compared case-insensitively).
    pub fn param(&self, name: &str) -> Option<&ExtensionParam> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for ExtensionParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        match &self.value {
            None => Ok(()),
            Some(value) if is_token(value) => write!(f, "={value}"),
            Some(value) => {
                // Not a token, so not valid for §9.1 (a conforming peer
                // refuses it), but quoted so that the header at least keeps
                // its structure instead of splitting the value apart.
                f.write_str("=\"")?;
                for c in value.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")
            }
        }
    }
}

impl fmt::Display for ExtensionOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for param in &self.params {
            write!(f, "; {param}")?;
        }
        Ok(())
    }
}

/// Writes offers as one `Sec-WebSocket-Extensions` header value, e.g.
/// `permessage-deflate; client_max_window_bits, x-webkit-deflate-frame`.
///
/// Values that are tokens are written bare, others quoted. Names and values
/// are not checked here; the handshake builders reject a result that is not
/// a valid header value.
pub fn to_header_value(offers: &[ExtensionOffer]) -> String {
    offers
        .iter()
        .map(ExtensionOffer::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `Sec-WebSocket-Extensions` header that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionError {
    line: usize,
    position: usize,
    reason: &'static str,
}

impl ExtensionError {
    /// Which header line the error is on, counting from 0.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The byte offset of the error within that header line's value.
    pub fn position(&self) -> usize {
        self.position
    }

    /// What is wrong, e.g. "unterminated quoted string".
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed Sec-WebSocket-Extensions header (line {}, byte {}): {}",
            self.line + 1,
            self.position,
            self.reason
        )
    }
}

impl std::error::Error for ExtensionError {}

/// Parses one `Sec-WebSocket-Extensions` header value into its offers, in
/// order.
///
/// ```
/// use weft_proto::handshake::parse_extensions;
/// let offers = parse_extensions(b"permessage-deflate; client_max_window_bits=\"10\", foo")?;
/// assert_eq!(offers.len(), 2);
/// assert_eq!(offers[0].name, "permessage-deflate");
/// assert_eq!(offers[0].params[0].value.as_deref(), Some("10"));
/// assert!(parse_extensions(b"permessage-deflate;").is_err());
/// # Ok::<(), weft_proto::handshake::ExtensionError>(())
/// ```
pub fn parse_extensions(value: &[u8]) -> Result<Vec<ExtensionOffer>, ExtensionError> {
    let mut offers = Vec::new();
    Parser {
        input: value,
        pos: 0,
        line: 0,
    }
    .parse_into(&mut offers)?;
    Ok(offers)
}

/// Parses every `Sec-WebSocket-Extensions` line of `headers`, in order, as
/// one list. No header at all gives an empty list.
pub fn parse_extension_headers(headers: &HeaderMap) -> Result<Vec<ExtensionOffer>, ExtensionError> {
    let mut offers = Vec::new();
    for (line, value) in headers.get_all(SEC_WEBSOCKET_EXTENSIONS).iter().enumerate() {
        Parser {
            input: value.as_bytes(),
            pos: 0,
            line,
        }
        .parse_into(&mut offers)?;
    }
    Ok(offers)
}

/// A cursor over one header line.
struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    line: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn error(&self, reason: &'static str) -> ExtensionError {
        ExtensionError {
            line: self.line,
            position: self.pos,
            reason,
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// A token, or `None` (position unchanged) when none starts here.
    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        let bytes = self.input.get(start..self.pos)?;
        if bytes.is_empty() {
            return None;
        }
        // tchar is ASCII, so this is always UTF-8.
        std::str::from_utf8(bytes).ok().map(str::to_owned)
    }

    /// A quoted-string starting at the opening quote, unescaped.
    fn quoted_string(&mut self) -> Result<String, ExtensionError> {
        let start = self.pos;
        self.pos += 1; // the opening quote
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => {
                    self.pos = start;
                    return Err(self.error("unterminated quoted string"));
                }
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) if c == b'\t' || c >= 0x20 && c != 0x7f => {
                            value.push(c);
                            self.pos += 1;
                        }
                        Some(_) => return Err(self.error("invalid escaped character")),
                        None => {
                            self.pos = start;
                            return Err(self.error("unterminated quoted string"));
                        }
                    }
                }
                Some(c) if c == b'\t' || c >= 0x20 && c != 0x7f => {
                    value.push(c);
                    self.pos += 1;
                }
                Some(_) => return Err(self.error("control character in quoted string")),
            }
        }
        match String::from_utf8(value) {
            Ok(value) if is_token(&value) => Ok(value),
            _ => {
                self.pos = start;
                Err(self.error("quoted parameter value is not a token"))
            }
        }
    }

    fn parse_into(&mut self, offers: &mut Vec<ExtensionOffer>) -> Result<(), ExtensionError> {
        loop {
            self.skip_ows();
            match self.peek() {
                None => return Ok(()),
                Some(b',') => {
                    // An empty list element.
                    self.pos += 1;
                    continue;
                }
                Some(_) => {}
            }
            let name = self
                .token()
                .ok_or_else(|| self.error("expected an extension name"))?;
            let mut offer = ExtensionOffer::new(name);
            loop {
                self.skip_ows();
                match self.peek() {
                    None => break,
                    Some(b',') => {
                        self.pos += 1;
                        break;
                    }
                    Some(b';') => {
                        self.pos += 1;
                        self.skip_ows();
                        let name = self
                            .token()
                            .ok_or_else(|| self.error("expected a parameter name after ';'"))?;
                        self.skip_ows();
                        let value = if self.peek() == Some(b'=') {
                            self.pos += 1;
                            self.skip_ows();
                            if self.peek() == Some(b'"') {
                                Some(self.quoted_string()?)
                            } else {
                                Some(self.token().ok_or_else(|| {
                                    self.error("expected a token or a quoted string after '='")
                                })?)
                            }
                        } else {
                            None
                        };
                        offer.params.push(ExtensionParam { name, value });
                    }
                    Some(_) => {
                        return Err(self.error("expected ';', ',' or the end of the header"));
                    }
                }
            }
            offers.push(offer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn param(name: &str, value: Option<&str>) -> ExtensionParam {
        ExtensionParam {
            name: name.into(),
            value: value.map(Into::into),
        }
    }

    #[test]
    fn single_offer_without_params() {
        assert_eq!(
            parse_extensions(b"permessage-deflate").unwrap(),
            [ExtensionOffer::new("permessage-deflate")]
        );
    }

    #[test]
    fn params_tokens_and_quoted() {
        let offers = parse_extensions(
            b"permessage-deflate ; client_max_window_bits; server_max_window_bits = \"10\" ;x=y",
        )
        .unwrap();
        assert_eq!(offers.len(), 1);
        assert_eq!(
            offers[0].params,
            [
                param("client_max_window_bits", None),
                param("server_max_window_bits", Some("10")),
                param("x", Some("y")),
            ]
        );
        assert_eq!(
            offers[0].param("SERVER_max_window_bits"),
            Some(&param("server_max_window_bits", Some("10")))
        );
    }

    #[test]
    fn escapes_in_quoted_value() {
        let offers = parse_extensions(br#"e; p="a\bc""#).unwrap();
        assert_eq!(offers[0].params[0].value.as_deref(), Some("abc"));
    }

    #[test]
    fn several_offers_and_empty_elements() {
        let offers = parse_extensions(b", a; x=1 ,, b ,c;y ,").unwrap();
        let names: Vec<_> = offers.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(offers[2].params, [param("y", None)]);
        assert!(parse_extensions(b"").unwrap().is_empty());
        assert!(parse_extensions(b"  ").unwrap().is_empty());
    }

    #[test]
    fn malformed() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"a;", 2, "expected a parameter name after ';'"),
            (b"a; =1", 3, "expected a parameter name after ';'"),
            (b"a;x=", 4, "expected a token or a quoted string after '='"),
            (b"a;x=\"1", 4, "unterminated quoted string"),
            (b"a;x=\"1\\", 4, "unterminated quoted string"),
            (b"a;x=\"1 2\"", 4, "quoted parameter value is not a token"),
            (b"a;x=\"\"", 4, "quoted parameter value is not a token"),
            (b"a;x=\"1\x01\"", 6, "control character in quoted string"),
            (b"a b", 2, "expected ';', ',' or the end of the header"),
            (b"a;x=1 2", 6, "expected ';', ',' or the end of the header"),
            (
                b"a;x=\"1\"2",
                7,
                "expected ';', ',' or the end of the header",
            ),
            (b";x", 0, "expected an extension name"),
            (b"a, ;x", 3, "expected an extension name"),
            (b"\"a\"", 0, "expected an extension name"),
            (b"a=1", 1, "expected ';', ',' or the end of the header"),
            (b"\xff", 0, "expected an extension name"),
        ];
        for &(input, position, reason) in cases {
            let err = parse_extensions(input).unwrap_err();
            assert_eq!(
                (err.position(), err.reason()),
                (position, reason),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn several_header_lines() {
        let mut headers = HeaderMap::new();
        assert!(parse_extension_headers(&headers).unwrap().is_empty());
        headers.append(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static("a; x"));
        headers.append(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static("b, c"));
        let names: Vec<_> = parse_extension_headers(&headers)
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        headers.append(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static("d;"));
        let err = parse_extension_headers(&headers).unwrap_err();
        assert_eq!((err.line(), err.position()), (2, 2));
        assert!(err.to_string().contains("line 3"), "{err}");
    }

    #[test]
    fn writes_header_value() {
        let offers = [
            ExtensionOffer::new("permessage-deflate")
                .with_param("client_max_window_bits", None)
                .with_param("server_max_window_bits", Some("10")),
            ExtensionOffer::new("x").with_param("q", Some("a \"b\"")),
        ];
        let value = to_header_value(&offers);
        assert_eq!(
            value,
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10, x; q=\"a \\\"b\\\"\""
        );
        // The first offer reads back; the second is not valid §9.1 syntax
        // (a quoted value must be a token) and is refused on the way in.
        assert_eq!(
            parse_extensions(to_header_value(&offers[..1]).as_bytes()).unwrap(),
            offers[..1]
        );
        assert!(parse_extensions(value.as_bytes()).is_err());
        assert_eq!(to_header_value(&[]), "");
    }
}
