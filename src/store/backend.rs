//! Builds the `object_store` for a [`Location`]: credentials from each store's standard
//! environment (plus Litestream's own names), request timeouts, and retries with backoff for
//! server errors, timeouts and connection resets (object_store's retry layer), all bounded by
//! the replica's `timeout`.

use super::http::SharedConnector;
use super::location::Location;
use crate::error::{Error, Result};
use object_store::aws::{AmazonS3Builder, S3CopyIfNotExists};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, RetryConfig, StaticCredentialProvider,
};
use std::sync::Arc;
use std::time::Duration;

const MAX_RETRIES: usize = 4;

fn client_options(timeout: Duration, allow_invalid_certificates: bool) -> ClientOptions {
    // One request may take at most half the budget, so that a retry still fits in it.
    ClientOptions::new()
        .with_timeout(timeout / 2)
        .with_connect_timeout(timeout.min(Duration::from_secs(5)) / 2)
        .with_allow_invalid_certificates(allow_invalid_certificates)
}

fn retry(timeout: Duration) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: MAX_RETRIES,
        retry_timeout: timeout,
    }
}

/// reqwest is built with rustls but no crypto provider (to keep C crypto out of the build):
/// install ring as the process default, unless the host already chose one.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Whether the environment gave the GCS builder credentials of its own: a service account
/// (path or key), application credentials or a bearer token.
fn names_google_credentials(b: &GoogleCloudStorageBuilder) -> bool {
    [
        GoogleConfigKey::ServiceAccount,
        GoogleConfigKey::ServiceAccountKey,
        GoogleConfigKey::ApplicationCredentials,
        GoogleConfigKey::BearerToken,
    ]
    .iter()
    .any(|key| b.get_config_value(key).is_some_and(|v| !v.is_empty()))
}

/// The store and the key prefix under which the replica's levels live.
pub(crate) fn build(
    location: &Location,
    url: &str,
    timeout: Duration,
) -> Result<Arc<dyn ObjectStore>> {
    let config_error = |e: object_store::Error| Error::Config(format!("replica {url}: {e}"));
    Ok(match location {
        Location::File { dir } => {
            if !dir.is_dir() {
                return Err(Error::ReplicaNotFound {
                    url: url.to_owned(),
                    detail: format!("{} is not a directory", dir.display()),
                });
            }
            let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| {
                Error::ReplicaNotFound {
                    url: url.to_owned(),
                    detail: e.to_string(),
                }
            })?;
            Arc::new(fs)
        }
        Location::S3 {
            bucket,
            endpoint,
            region,
            force_path_style,
            skip_verify,
            ..
        } => {
            install_tls_provider();
            let mut b = AmazonS3Builder::from_env()
                .with_http_connector(SharedConnector)
                .with_bucket_name(bucket)
                .with_virtual_hosted_style_request(!force_path_style)
                .with_client_options(client_options(timeout, *skip_verify))
                .with_retry(retry(timeout))
                // A file too large to hold whole is uploaded in parts under another name,
                // then copied to its own only if that is free (If-None-Match on the copy's
                // completion): the conditional create of large files.
                .with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
            // Litestream's own credential names, when the AWS ones are absent.
            if env("AWS_ACCESS_KEY_ID").is_none()
                && let (Some(id), Some(secret)) = (
                    env("LITESTREAM_ACCESS_KEY_ID"),
                    env("LITESTREAM_SECRET_ACCESS_KEY"),
                )
            {
                b = b.with_access_key_id(id).with_secret_access_key(secret);
            }
            if let Some(endpoint) = endpoint {
                b = b
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint);
            }
            match region {
                Some(region) => b = b.with_region(region),
                // Custom endpoints (MinIO, R2, ...) default to us-east-1, as in Litestream.
                None if endpoint.is_some()
                    && env("AWS_REGION").is_none()
                    && env("AWS_DEFAULT_REGION").is_none() =>
                {
                    b = b.with_region("us-east-1");
                }
                None => {}
            }
            Arc::new(b.build().map_err(config_error)?)
        }
        Location::Gcs {
            bucket, endpoint, ..
        } => {
            install_tls_provider();
            let allow_http = endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"));
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_http_connector(SharedConnector)
                .with_bucket_name(bucket)
                .with_client_options(client_options(timeout, false).with_allow_http(allow_http))
                .with_retry(retry(timeout));
            if let Some(endpoint) = endpoint {
                b = b.with_base_url(endpoint);
                // A GCS-compatible server (an emulator) takes no credentials: unless the
                // environment names some, send none, rather than ask Google or a metadata
                // server for a token the endpoint does not want. Skipping the signature
                // covers GET and LIST only (object_store 0.14 still asks for a token before
                // a PUT or DELETE): an empty static token covers the rest, as a key with
                // `disable_oauth` would.
                if !names_google_credentials(&b) {
                    b = b.with_skip_signature(true).with_credentials(Arc::new(
                        StaticCredentialProvider::new(GcpCredential {
                            bearer: String::new(),
                        }),
                    ));
                }
            }
            Arc::new(b.build().map_err(config_error)?)
        }
        Location::Azure {
            account, container, ..
        } => {
            install_tls_provider();
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_http_connector(SharedConnector)
                .with_container_name(container)
                .with_client_options(client_options(timeout, false))
                .with_retry(retry(timeout));
            if let Some(account) = account {
                b = b.with_account(account);
            }
            if let Some(key) = env("LITESTREAM_AZURE_ACCOUNT_KEY") {
                b = b.with_access_key(key);
            }
            Arc::new(b.build().map_err(config_error)?)
        }
    })
}
