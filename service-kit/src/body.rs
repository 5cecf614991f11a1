//! Request bodies are read whole, within a size and a deadline, before anything else is
//! held for the request: an admission permit, a database connection, a handler's lock.
//!
//! Without it a client that sends its headers and then trickles its body a byte at a
//! time holds whatever the request took before its extractor read the body, for as long
//! as it likes: sixty-four such requests fill a replica's whole admission budget. Every
//! body these services take is a small form or a JSON document, so buffering it first
//! costs nothing a real request notices.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The largest body either service takes (forms, tokens, JSON).
pub const LIMIT: usize = 64 * 1024;
/// How long a client may take to send its body once its headers arrived.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Middleware (`axum::middleware::from_fn(read_first)`): the body whole, at most
/// [`LIMIT`] bytes within [`DEADLINE`], or 413 / 408 at once.
pub async fn read_first(req: Request, next: Next) -> Response {
    read_first_within(req, next, LIMIT, DEADLINE).await
}

/// [`read_first`] with its own size and deadline (tests use a short one).
pub async fn read_first_within(
    req: Request,
    next: Next,
    limit: usize,
    deadline: Duration,
) -> Response {
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONNECTION, "close")],
            "درخواست بیش از اندازه بزرگ است. / The request is too large.",
        )
            .into_response(),
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            [(header::CONNECTION, "close")],
            "درخواست به موقع کامل نشد. / The request did not arrive in time.",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server whose only route takes a form and counts the requests it saw.
    async fn serve(with_layer: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let mut app = axum::Router::new().route(
            "/x",
            axum::routing::post(move |body: String| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    body
                }
            }),
        );
        if with_layer {
            app = app.layer(axum::middleware::from_fn(|req, next| {
                read_first_within(req, next, 1024, Duration::from_millis(300))
            }));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (addr, seen)
    }

    /// Sends headers announcing `announced` bytes, then only three; the answer's first
    /// line, if one comes within two seconds.
    async fn trickle(addr: std::net::SocketAddr, announced: usize) -> Option<String> {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /x HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: {announced}\r\n\r\nabc"
        );
        s.write_all(head.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()?
                .to_owned(),
        )
    }

    #[tokio::test]
    async fn a_trickled_body_is_refused_at_its_deadline_before_the_handler_runs() {
        let (addr, seen) = serve(true).await;
        let answer = trickle(addr, 100).await;
        assert_eq!(answer.as_deref(), Some("HTTP/1.1 408 Request Timeout"));
        assert_eq!(
            seen.load(Ordering::SeqCst),
            0,
            "the handler held the request"
        );
    }

    /// Without the layer, the same request holds the handler's extractor (and whatever
    /// was taken before it) until the client gives up: what the layer is for.
    #[tokio::test]
    async fn without_it_a_trickled_body_holds_the_request() {
        let (addr, _) = serve(false).await;
        assert_eq!(trickle(addr, 100).await, None);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_and_a_whole_one_served() {
        let (addr, seen) = serve(true).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let big = "a".repeat(2000);
        let req = format!(
            "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{big}",
            big.len()
        );
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; 128];
        let n = s.read(&mut buf).await.expect("read");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"));
        let client = reqwest_free_post(addr, "hello").await;
        assert!(client.starts_with("HTTP/1.1 200"), "{client}");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    async fn reqwest_free_post(addr: std::net::SocketAddr, body: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!(
            "POST /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }
}
