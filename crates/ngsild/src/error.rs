//! NGSI-LD error types (ETSI GS CIM 009 §5.5.2) rendered as RFC 7807 problem details by the HTTP layer.

use serde_json::{json, Value};

/// The NGSI-LD error kinds with their problem type URIs and HTTP status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    BadRequestData,
    AlreadyExists,
    OperationNotSupported,
    ResourceNotFound,
    InternalError,
    TooComplexQuery,
    TooManyResults,
    LdContextNotAvailable,
    NotAcceptable,
    UnsupportedMediaType,
    PayloadTooLarge,
    MethodNotAllowed,
    Conflict,
    Unauthorized,
    Forbidden,
    ServiceUnavailable,
    NonexistentTenant,
    /// A body without a declared length (HTTP 411).
    LengthRequired,
}

impl ErrorKind {
    /// Problem type URI as the specification lists it.
    pub fn type_uri(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest",
            ErrorKind::BadRequestData => "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
            ErrorKind::AlreadyExists => "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists",
            ErrorKind::OperationNotSupported => {
                "https://uri.etsi.org/ngsi-ld/errors/OperationNotSupported"
            }
            ErrorKind::ResourceNotFound => "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound",
            ErrorKind::InternalError => "https://uri.etsi.org/ngsi-ld/errors/InternalError",
            ErrorKind::TooComplexQuery => "https://uri.etsi.org/ngsi-ld/errors/TooComplexQuery",
            ErrorKind::TooManyResults => "https://uri.etsi.org/ngsi-ld/errors/TooManyResults",
            ErrorKind::LdContextNotAvailable => {
                "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable"
            }
            ErrorKind::NotAcceptable => "https://uri.etsi.org/ngsi-ld/errors/NotAcceptable",
            ErrorKind::UnsupportedMediaType => {
                "https://uri.etsi.org/ngsi-ld/errors/UnsupportedMediaType"
            }
            ErrorKind::PayloadTooLarge => "https://uri.etsi.org/ngsi-ld/errors/PayloadTooLarge",
            ErrorKind::MethodNotAllowed => "https://uri.etsi.org/ngsi-ld/errors/MethodNotAllowed",
            ErrorKind::Conflict => "https://uri.etsi.org/ngsi-ld/errors/Conflict",
            ErrorKind::Unauthorized => "https://uri.etsi.org/ngsi-ld/errors/Unauthorized",
            ErrorKind::Forbidden => "https://uri.etsi.org/ngsi-ld/errors/Forbidden",
            ErrorKind::ServiceUnavailable => {
                "https://uri.etsi.org/ngsi-ld/errors/ServiceUnavailable"
            }
            ErrorKind::NonexistentTenant => "https://uri.etsi.org/ngsi-ld/errors/NonexistentTenant",
            ErrorKind::LengthRequired => "https://uri.etsi.org/ngsi-ld/errors/LengthRequired",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::BadRequestData => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::ResourceNotFound | ErrorKind::NonexistentTenant => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::NotAcceptable => 406,
            ErrorKind::AlreadyExists | ErrorKind::Conflict => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::OperationNotSupported => 422,
            ErrorKind::InternalError => 500,
            ErrorKind::LengthRequired => 411,
            // A remote @context that cannot be fetched is a gateway failure (ETSI TP 043_01).
            ErrorKind::LdContextNotAvailable => 504,
            ErrorKind::ServiceUnavailable => 503,
            ErrorKind::TooComplexQuery | ErrorKind::TooManyResults => 403,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "Invalid request",
            ErrorKind::BadRequestData => "Bad request data",
            ErrorKind::AlreadyExists => "Already exists",
            ErrorKind::OperationNotSupported => "Operation not supported",
            ErrorKind::ResourceNotFound => "Resource not found",
            ErrorKind::InternalError => "Internal error",
            ErrorKind::TooComplexQuery => "Too complex query",
            ErrorKind::TooManyResults => "Too many results",
            ErrorKind::LdContextNotAvailable => "LD context not available",
            ErrorKind::NotAcceptable => "Not acceptable",
            ErrorKind::UnsupportedMediaType => "Unsupported media type",
            ErrorKind::PayloadTooLarge => "Payload too large",
            ErrorKind::MethodNotAllowed => "Method not allowed",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::Unauthorized => "Unauthorized",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::ServiceUnavailable => "Service unavailable",
            ErrorKind::NonexistentTenant => "Nonexistent tenant",
            ErrorKind::LengthRequired => "Length required",
        }
    }
}

/// An NGSI-LD error: a kind and a detail that points at the problem.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {detail}", kind.title())]
pub struct NgsiError {
    pub kind: ErrorKind,
    pub detail: String,
}

impl NgsiError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        NgsiError {
            kind,
            detail: detail.into(),
        }
    }
    pub fn bad_data(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequestData, detail)
    }
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFound, detail)
    }
    pub fn exists(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, detail)
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InternalError, detail)
    }

    /// RFC 7807 body.
    pub fn to_problem(&self) -> Value {
        json!({
            "type": self.kind.type_uri(),
            "title": self.kind.title(),
            "status": self.kind.status(),
            "detail": self.detail,
        })
    }
}

pub type Result<T, E = NgsiError> = std::result::Result<T, E>;
