//! Replica URLs in Litestream's own forms, parsed into where the replica lives. Pure: no IO.
//!
//! - `file:///absolute/dir` (percent-encoding allowed)
//! - `s3://bucket/path?endpoint=http://127.0.0.1:9000&region=us-east-1&forcePathStyle=true&skipVerify=false`
//! - `gs://bucket/path`, or `gs://bucket/path?endpoint=http://127.0.0.1:4443` for a
//!   GCS-compatible server (an emulator)
//! - `abs://[account@]container/path` (also `az://`)
//!
//! An S3 or GCS endpoint without a scheme gets `http://` when local (localhost, 127.0.0.1, private
//! ranges, `.local`) and `https://` otherwise; a custom endpoint implies path-style requests
//! unless `forcePathStyle=false`, as in Litestream (`replica_url.go`, `s3/replica_client.go`).

use crate::error::{Error, Result};
use std::path::PathBuf;
use url::Url;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    File {
        dir: PathBuf,
    },
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: Option<String>,
        force_path_style: bool,
        skip_verify: bool,
    },
    Gcs {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
    },
    Azure {
        account: Option<String>,
        container: String,
        prefix: String,
    },
}

/// Parses a replica URL; the second value is the URL as it may be printed (no password).
///
/// # Errors
/// [`Error::Config`] naming what is wrong with the URL.
pub(crate) fn parse(raw: &str) -> Result<(Location, String)> {
    let bad = |why: &str| Error::Config(format!("replica URL {:?}: {why}", redact(raw)));
    if raw.to_ascii_lowercase().starts_with("s3://arn:") {
        return Err(bad("S3 access point ARNs are not supported"));
    }
    let url = Url::parse(raw).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => {
            bad("has no scheme (expected file:///dir, s3://bucket/path, gs://, abs://)")
        }
        e => bad(&e.to_string()),
    })?;
    let query = |keys: &[&str]| {
        url.query_pairs()
            .find(|(k, _)| keys.contains(&k.as_ref()))
            .map(|(_, v)| v.into_owned())
    };
    let flag = |keys: &[&str]| -> Result<Option<bool>> {
        match query(keys).as_deref() {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(v) => Err(bad(&format!(
                "{} must be true or false, not {v:?}",
                keys.first().unwrap_or(&"flag")
            ))),
        }
    };
    let host = url.host_str().unwrap_or_default().to_owned();
    let prefix = percent_encoding::percent_decode_str(url.path().trim_matches('/'))
        .decode_utf8()
        .map_err(|_| bad("path is not UTF-8"))?
        .into_owned();
    let need_bucket = |what: &str| -> Result<()> {
        if host.is_empty() {
            Err(bad(&format!("needs a {what} (scheme://{what}/path)")))
        } else {
            Ok(())
        }
    };
    let location = match url.scheme() {
        "file" => {
            if !host.is_empty() && host != "localhost" {
                return Err(bad("a file URL needs an absolute path (file:///dir)"));
            }
            let path = percent_encoding::percent_decode_str(url.path())
                .decode_utf8()
                .map_err(|_| bad("path is not UTF-8"))?;
            Location::File {
                dir: PathBuf::from(path.as_ref()),
            }
        }
        "s3" => {
            need_bucket("bucket")?;
            let endpoint = query(&["endpoint"])
                .map(|e| checked_endpoint(&e).map_err(|why| bad(&why)))
                .transpose()?;
            let force_path_style =
                flag(&["forcePathStyle", "force-path-style"])?.unwrap_or(endpoint.is_some());
            Location::S3 {
                bucket: host,
                prefix,
                region: query(&["region"]),
                force_path_style,
                skip_verify: flag(&["skipVerify", "skip-verify"])?.unwrap_or(false),
                endpoint,
            }
        }
        "gs" => {
            need_bucket("bucket")?;
            Location::Gcs {
                bucket: host,
                prefix,
                endpoint: query(&["endpoint"])
                    .map(|e| checked_endpoint(&e).map_err(|why| bad(&why)))
                    .transpose()?,
            }
        }
        "abs" | "az" => {
            need_bucket("container")?;
            Location::Azure {
                account: (!url.username().is_empty()).then(|| url.username().to_owned()),
                container: host,
                prefix,
            }
        }
        other => {
            return Err(bad(&format!(
                "scheme {other:?} is not supported (supported: file, s3, gs, abs)"
            )));
        }
    };
    Ok((location, redact(raw)))
}

/// An endpoint as given (`127.0.0.1:9000`, `https://host`) with its scheme, checked as a URL
/// now, so that a bad port or host is a sentence at the open and never a failure (or a
/// panic) inside the store client later.
fn checked_endpoint(raw: &str) -> std::result::Result<String, String> {
    let endpoint = ensure_scheme(raw.trim());
    let shown = || scrub_user_info(&endpoint);
    let url = Url::parse(&endpoint).map_err(|e| format!("endpoint {:?}: {e}", shown()))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("endpoint {:?}: has no host", shown()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "endpoint {:?}: takes no query or fragment (percent-encode ? and # inside the replica URL)",
            shown()
        ));
    }
    Ok(endpoint)
}

/// `text` (an endpoint, or an error from the store client, which may quote a request URL)
/// with the user info of every `scheme://user:password@host` in it replaced
/// (`scheme://REDACTED@host`).
pub(crate) fn scrub_user_info(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(['/', ' ', '?', '#', '"', '\''])
            .unwrap_or(tail.len());
        let authority = tail.get(..authority_end).unwrap_or_default();
        match authority.rfind('@') {
            Some(a) => {
                out.push_str("REDACTED");
                out.push_str(authority.get(a..).unwrap_or_default());
            }
            None => out.push_str(authority),
        }
        rest = tail.get(authority_end..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// The URL without a password in its user info, nor in an `endpoint` inside its query.
pub(crate) fn redact(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url)
            if url.query_pairs().any(|(k, v)| {
                k == "endpoint" && scrub_user_info(&ensure_scheme(&v)) != ensure_scheme(&v)
            }) =>
        {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = match k.as_ref() {
                        "endpoint" => scrub_user_info(&ensure_scheme(&v)),
                        _ => v.into_owned(),
                    };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
            if url.password().is_some() {
                let _ = url.set_password(Some("REDACTED"));
            }
            url.to_string()
        }
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("REDACTED"));
            url.to_string()
        }
        Ok(_) => raw.to_owned(),
        // Unparseable: keep only what cannot hold a secret (no user info, no query), with
        // an ellipsis where something was cut and nowhere else.
        Err(_) => {
            let (scheme, rest) = raw.split_once("://").map_or(("", raw), |(s, r)| (s, r));
            let (rest, query) = rest
                .split_once('?')
                .map_or((rest, false), |(r, _)| (r, true));
            let (user, host) = rest
                .rsplit_once('@')
                .map_or((false, rest), |(_, h)| (true, h));
            format!(
                "{scheme}{}{}{host}{}",
                if scheme.is_empty() { "" } else { "://" },
                if user { "…@" } else { "" },
                if query { "?…" } else { "" }
            )
        }
    }
}

/// `http://` for local endpoints, `https://` for the rest, unless a scheme is given.
fn ensure_scheme(endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        return endpoint.to_owned();
    }
    let host = endpoint
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let private_172 = host
        .strip_prefix("172.")
        .and_then(|rest| rest.split('.').next()?.parse::<u8>().ok())
        .is_some_and(|b| (16..=31).contains(&b));
    let local = host == "localhost"
        || host == "127.0.0.1"
        || host.starts_with("10.")
        || host.starts_with("192.168.")
        || private_172
        || host.ends_with(".local")
        || host.ends_with(".localhost");
    format!("{}://{endpoint}", if local { "http" } else { "https" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_in_litestream_forms() {
        let (loc, _) =
            parse("s3://bkt/app.db?endpoint=127.0.0.1:9000&region=eu-west-1&forcePathStyle=true")
                .unwrap();
        assert_eq!(
            loc,
            Location::S3 {
                bucket: "bkt".into(),
                prefix: "app.db".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-west-1".into()),
                force_path_style: true,
                skip_verify: false,
            }
        );
        let (loc, _) = parse("s3://bkt/a/b?endpoint=s3.example.com&forcePathStyle=false").unwrap();
        assert!(matches!(
            loc,
            Location::S3 { ref endpoint, force_path_style: false, ref prefix, .. }
                if endpoint.as_deref() == Some("https://s3.example.com") && prefix == "a/b"
        ));
        let (loc, _) = parse("s3://bkt/db").unwrap();
        assert!(matches!(
            loc,
            Location::S3 {
                endpoint: None,
                force_path_style: false,
                ..
            }
        ));
    }

    #[test]
    fn gs_abs_az_and_file_urls() {
        assert_eq!(
            parse("gs://bkt/dbs/app.db").unwrap().0,
            Location::Gcs {
                bucket: "bkt".into(),
                prefix: "dbs/app.db".into(),
                endpoint: None,
            }
        );
        assert_eq!(
            parse("gs://bkt/app.db?endpoint=127.0.0.1:4443").unwrap().0,
            Location::Gcs {
                bucket: "bkt".into(),
                prefix: "app.db".into(),
                endpoint: Some("http://127.0.0.1:4443".into()),
            }
        );
        assert_eq!(
            parse("abs://acct@cont/app.db").unwrap().0,
            Location::Azure {
                account: Some("acct".into()),
                container: "cont".into(),
                prefix: "app.db".into()
            }
        );
        assert!(matches!(
            parse("az://cont/x").unwrap().0,
            Location::Azure { account: None, .. }
        ));
        assert_eq!(
            parse("file:///var/backups/my%20app.db").unwrap().0,
            Location::File {
                dir: "/var/backups/my app.db".into()
            }
        );
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            ("ftp://x/y", "scheme \"ftp\" is not supported"),
            ("/just/a/path", "has no scheme"),
            ("s3:///no-bucket", "needs a bucket"),
            ("file://relative/x", "needs an absolute path"),
            ("s3://b/p?forcePathStyle=maybe", "must be true or false"),
            (
                "s3://arn:aws:s3:us-east-1:1:accesspoint/x/db",
                "not supported",
            ),
            // Issue #22: a bad port was a panic in the store client's task.
            (
                "s3://b/p?endpoint=http://127.0.0.1:1x",
                "endpoint \"http://127.0.0.1:1x\": invalid port number",
            ),
            ("gs://b/p?endpoint=http://:80", "endpoint"),
            ("s3://b/p?endpoint=http://h%3Fx", "endpoint"),
        ] {
            let err = parse(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn passwords_never_print() {
        assert_eq!(redact("not a url"), "not a url", "nothing cut, no ellipsis");
        // Unparseable (a bracket opens an IPv6 host that never closes).
        assert_eq!(redact("s3://us:pw@[bkt/p?k=v"), "s3://…@[bkt/p?…");
        assert_eq!(redact("s3://[bkt/p"), "s3://[bkt/p");
        let (_, shown) = parse("abs://acct:hunter2@cont/app.db").unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!redact("s3://user:hunter2@b/x").contains("hunter2"));
        let err = parse("bogus://user:hunter2@b/x").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        // Issue #22: a password in an endpoint is redacted wherever the URL shows.
        let url = "s3://b/p?endpoint=http://user:hunter2@127.0.0.1:9000&region=x";
        let (loc, shown) = parse(url).unwrap();
        assert!(
            !shown.contains("hunter2") && shown.contains("REDACTED"),
            "{shown}"
        );
        assert!(matches!(loc, Location::S3 { endpoint: Some(e), .. } if e.contains("hunter2")));
        let err = parse("s3://b/p?endpoint=http://u:hunter2@127.0.0.1:9x")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(!scrub_user_info("GET http://u:hunter2@h/x failed").contains("hunter2"));
    }

    #[test]
    fn private_ranges_get_http() {
        assert_eq!(ensure_scheme("172.20.0.5:9000"), "http://172.20.0.5:9000");
        assert_eq!(ensure_scheme("172.40.0.5:9000"), "https://172.40.0.5:9000");
        assert_eq!(ensure_scheme("minio.local:9000"), "http://minio.local:9000");
        assert_eq!(ensure_scheme("https://x"), "https://x");
    }
}
