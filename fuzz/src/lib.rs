//! Shared scaffolding for the fuzz targets that drive an axum router in process.

use std::sync::OnceLock;
use tower::ServiceExt;

/// A router with the single-threaded runtime that runs it, built once per fuzzing process.
pub struct RouterFixture {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

impl RouterFixture {
    /// The fixture in `cell`, building the router inside the runtime on first use.
    pub fn get_or_init(cell: &'static OnceLock<Self>, build: impl FnOnce() -> axum::Router) -> &'static Self {
        cell.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let router = runtime.block_on(async { build() });
            RouterFixture { runtime, router }
        })
    }

    /// Sends one request through the router and waits for its response.
    pub fn call(&self, request: http::Request<axum::body::Body>) -> http::Response<axum::body::Body> {
        self.runtime.block_on(self.router.clone().oneshot(request)).unwrap()
    }
}
