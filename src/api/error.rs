//! The API's one error type: a status and the message that goes into `{"Error":"…"}`.

use crate::http::Response;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message)
    }

    pub fn unknown_endpoint(uri: &str) -> ApiError {
        ApiError::bad_request(format!("unknown endpoint: {uri}"))
    }

    pub fn method_not_supported() -> ApiError {
        ApiError::bad_request("Method not supported for this endpoint")
    }

    pub fn not_found() -> ApiError {
        ApiError::new(404, "Resource does not exist")
    }

    pub fn no_space() -> ApiError {
        ApiError::new(507, "Not enough disk space available")
    }

    pub fn internal(what: impl std::fmt::Display) -> ApiError {
        log::error!("api: internal error: {what}");
        ApiError::new(500, "Internal Error")
    }

    pub fn into_response(self) -> Response {
        Response::error(self.status, &self.message)
    }
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Response {
        e.into_response()
    }
}
