//! A tiny HTTP/1.1 server with persistent connections, std only, for the endpoint benchmark
//! (busybox httpd forks per connection and closes each one). `bench/scheduler/run.sh` compiles it
//! statically with plain `rustc` and puts it in a `FROM scratch` image.
//!
//! Usage: `keepalive_server PORT`. Answers every request with `200 ok`; closes after HTTP/1.0
//! requests and `Connection: close`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn serve(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(8192, stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut close = line.trim_end().ends_with("HTTP/1.0");
        // Headers until the blank line; requests have no body (GET).
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if header == "connection: close" {
                close = true;
            }
        }
        let connection = if close { "close" } else { "keep-alive" };
        write!(
            writer,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: {connection}\r\n\r\nok\n"
        )?;
        if close {
            return Ok(());
        }
    }
}

fn main() {
    let port = std::env::args().nth(1).unwrap_or_else(|| "8080".into());
    let listener = TcpListener::bind(format!("0.0.0.0:{port}")).expect("bind");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = serve(stream);
        });
    }
}
