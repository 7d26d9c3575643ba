//! Loopback listeners: a free port, a bound listener and its address, and an axum app served in the background.

use axum::Router;
use tokio::net::TcpListener;

/// A port that was free a moment ago (for programs that cannot report the port they picked).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A listener on a free loopback port, and its address (`127.0.0.1:PORT`).
pub async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    (listener, address)
}

/// Serves `app` on a free loopback port in the background; its base URL (`http://127.0.0.1:PORT`).
pub async fn serve(app: Router) -> String {
    let (listener, address) = listen().await;
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}
