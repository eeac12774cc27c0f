//! `--staticdir`: files from a directory (tower-http's `ServeDir`: ranges, conditional
//! requests, content types), with nothing outside it served, symbolic links included.

use crate::routes::{box_full, status, ResBody};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::path::{Component, Path, PathBuf};
use tower_http::services::ServeDir;

/// Serves `req` from `dir`.
pub async fn serve(dir: &Path, req: Request<Incoming>) -> Response<ResBody> {
    let Some(file) = local_path(dir, req.uri().path()) else {
        return status(StatusCode::NOT_FOUND, "Not Found").map(box_full);
    };
    // A link that leads out of the directory is not followed (ServeDir would).
    if file.exists() && !crate::script::inside(&file, dir) {
        return status(StatusCode::NOT_FOUND, "Not Found").map(box_full);
    }
    match ServeDir::new(dir).try_call(req).await {
        Ok(resp) => resp.map(|b| b.map_err(Into::into).boxed_unsync()),
        Err(_) => status(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").map(box_full),
    }
}

/// The file a URL path names under `dir` (percent-decoding left to ServeDir; a path with
/// `..` or a NUL names nothing).
fn local_path(dir: &Path, url_path: &str) -> Option<PathBuf> {
    let mut out = dir.to_path_buf();
    for c in Path::new(url_path.trim_start_matches('/')).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}
