//! A minimal HTTP/1.1 client for load generation: one blocking keep-alive connection, requests
//! written whole with one `write_all`, responses read with `Content-Length`, chunked or
//! read-to-close bodies. Nothing here is for general use: there is no TLS, no redirect, no proxy.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A parsed `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port` as written, for the `Host` header.
    pub authority: String,
    /// The path and query, `/` when empty.
    pub path: String,
}

impl Url {
    /// Parses a plain `http://` URL.
    pub fn parse(url: &str) -> Result<Url, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(Url {
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }

    /// The first address the authority resolves to (port 80 when none is given).
    pub fn resolve(&self) -> io::Result<SocketAddr> {
        let target = if self
            .authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            self.authority.clone()
        } else {
            format!("{}:80", self.authority)
        };
        target
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{target} resolves to nothing")))
    }
}

/// A response: its status and, when asked for, its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, when kept (see [`Conn::round_trip`]).
    pub body: Vec<u8>,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// One keep-alive connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    line: String,
}

impl Conn {
    /// Connects, with Nagle's algorithm off (each request is one write anyway).
    pub fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Conn {
            reader: BufReader::with_capacity(64 * 1024, stream),
            line: String::new(),
        })
    }

    /// Writes `request` (head and body, already formatted) and reads the response. The body is
    /// kept only when the status is not 2xx (bodies of successes are read and dropped).
    pub fn round_trip(&mut self, request: &[u8]) -> io::Result<Response> {
        self.reader.get_mut().write_all(request)?;
        read_response(&mut self.reader, &mut self.line)
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_line(reader: &mut impl BufRead, line: &mut String) -> io::Result<()> {
    line.clear();
    if reader.read_line(line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed by the server",
        ));
    }
    if line.len() > 64 * 1024 {
        return Err(bad("response line over 64 KiB"));
    }
    Ok(())
}

/// Reads one response from `reader`, skipping interim (1xx) responses.
pub fn read_response(reader: &mut impl BufRead, line: &mut String) -> io::Result<Response> {
    loop {
        read_line(reader, line)?;
        let mut parts = line.trim_end().splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(bad(format!("not an HTTP/1.x status line: {:?}", line.trim_end())));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("no status code in {:?}", line.trim_end())))?;
        let mut close = version == "HTTP/1.0";
        let (mut length, mut chunked) = (None, false);
        loop {
            read_line(reader, line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                return Err(bad(format!("malformed header {header:?}")));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| bad(format!("bad Content-Length {value:?}")))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                let value = value.to_ascii_lowercase();
                close = value.contains("close") || (close && !value.contains("keep-alive"));
            }
        }
        if (100..200).contains(&status) {
            continue;
        }
        let keep = !(200..300).contains(&status);
        let mut body = Vec::new();
        if status == 204 || status == 304 {
            // No body, whatever the headers say.
        } else if chunked {
            read_chunked(reader, line, keep.then_some(&mut body))?;
        } else if let Some(n) = length {
            copy(&mut (&mut *reader).take(n), keep.then_some(&mut body), n)?;
        } else {
            copy(reader, keep.then_some(&mut body), u64::MAX)?;
            close = true;
        }
        return Ok(Response { status, body, close });
    }
}

/// Copies exactly `n` bytes (or until EOF when `n` is `u64::MAX`) into `into`, or drops them.
fn copy(reader: &mut impl Read, into: Option<&mut Vec<u8>>, n: u64) -> io::Result<()> {
    let copied = match into {
        Some(body) => reader.read_to_end(body)? as u64,
        None => io::copy(reader, &mut io::sink())?,
    };
    if n != u64::MAX && copied != n {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "response body cut short"));
    }
    Ok(())
}

fn read_chunked(reader: &mut impl BufRead, line: &mut String, mut into: Option<&mut Vec<u8>>) -> io::Result<()> {
    loop {
        read_line(reader, line)?;
        let size = line.trim_end().split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| bad(format!("bad chunk size {size:?}")))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                read_line(reader, line)?;
                if line.trim_end().is_empty() {
                    return Ok(());
                }
            }
        }
        copy(&mut (&mut *reader).take(size), into.as_deref_mut(), size)?;
        read_line(reader, line)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(wire: &str) -> Vec<Response> {
        let mut reader = BufReader::new(wire.as_bytes());
        let mut line = String::new();
        let mut out = Vec::new();
        while !reader.fill_buf().unwrap().is_empty() {
            out.push(read_response(&mut reader, &mut line).unwrap());
        }
        out
    }

    #[test]
    fn reads_keep_alive_sequences_of_every_framing() {
        let wire = "HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n\
                    HTTP/1.1 400 Bad Request\r\nContent-Length: 13\r\n\r\nout of order\n\
                    HTTP/1.1 100 Continue\r\n\r\n\
                    HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n\
                    HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
        let got = parse_all(wire);
        assert_eq!(got.len(), 4);
        assert_eq!(
            (got[0].status, got[0].body.as_slice(), got[0].close),
            (204, &b""[..], false)
        );
        assert_eq!((got[1].status, got[1].body.as_slice()), (400, &b"out of order\n"[..]));
        assert_eq!((got[2].status, got[2].body.as_slice()), (500, &b"abcdefg"[..]));
        // Bodies of successes are read but not kept.
        assert_eq!(
            (got[3].status, got[3].body.as_slice(), got[3].close),
            (200, &b""[..], true)
        );
    }

    #[test]
    fn short_bodies_and_garbage_are_errors() {
        let mut line = String::new();
        let mut r = BufReader::new(&b"HTTP/1.1 400 x\r\nContent-Length: 10\r\n\r\nabc"[..]);
        assert!(read_response(&mut r, &mut line).is_err());
        let mut r = BufReader::new(&b"SSH-2.0-OpenSSH\r\n"[..]);
        assert!(read_response(&mut r, &mut line).is_err());
    }

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:9090/api/v1/write").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.path.as_str()),
            ("127.0.0.1:9090", "/api/v1/write")
        );
        assert_eq!(u.resolve().unwrap(), "127.0.0.1:9090".parse().unwrap());
        assert_eq!(Url::parse("http://localhost").unwrap().path, "/");
        assert!(Url::parse("https://x/").is_err());
    }
}
