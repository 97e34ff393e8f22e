//! ApiVersions v0-v3: the table of [`super::APIS`], as it is.

use std::rc::Rc;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::{Answer, Api, Request, APIS};
use crate::protocol::{self, ResponseError};
use crate::server::Shard;

pub const API: Api = Api {
    key: ApiKey::ApiVersions,
    min_version: 0,
    max_version: 3,
    handle: |shard, request| Box::pin(handle(shard, request)),
};

fn response(error_code: i16) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.error_code = error_code;
    response.api_keys = APIS
        .iter()
        .map(|api| {
            let mut version = ApiVersion::default();
            version.api_key = api.key as i16;
            version.min_version = api.min_version;
            version.max_version = api.max_version;
            version
        })
        .collect();
    response.finalized_features_epoch = -1;
    response
}

async fn handle(_shard: Rc<Shard>, request: Request) -> Answer {
    // v3 carries the client's software name and version; nothing here depends on them.
    let _: ApiVersionsRequest = request.decode("ApiVersionsRequest")?;
    request.answer(&response(0))
}

/// The answer to a version we do not serve: v0, UNSUPPORTED_VERSION, and our ranges, so that the
/// client can retry with a version both sides know.
pub async fn unsupported(correlation_id: i32) -> Answer {
    protocol::encode_response(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &response(ResponseError::UnsupportedVersion.code()),
    )
    .map(Some)
}
