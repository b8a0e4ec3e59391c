//! `GET /v1/stream?from=H`: server-sent events, one `block` event per certified block.

use futures::StreamExt;

use crate::{CertifiedBlock, Client, ClientError};

/// An open event stream from one replica.
pub struct BlockStream {
    url: String,
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

/// The longest event we accept (a block of the largest size, as JSON, with margin).
const EVENT_BYTES_MAX: usize = 256 << 20;

impl BlockStream {
    /// Opens the stream on the first replica that accepts it.
    pub async fn open(client: &Client, from: u64) -> Result<Self, ClientError> {
        let mut last = String::new();
        for url in client.urls() {
            match client
                .http()
                .get(format!("{url}/v1/stream?from={from}"))
                .timeout(std::time::Duration::from_secs(365 * 24 * 3600))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    return Ok(Self {
                        url: url.clone(),
                        body: r.bytes_stream().boxed(),
                        buf: Vec::new(),
                    })
                }
                Ok(r) => last = format!("{url}: HTTP {}", r.status()),
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        Err(ClientError::Unavailable {
            deadline: std::time::Duration::ZERO,
            last,
        })
    }

    /// The next block, or `None` when the replica closed the stream.
    pub async fn next(&mut self) -> Result<Option<CertifiedBlock>, ClientError> {
        loop {
            if let Some(end) = find_event_end(&self.buf) {
                let event: Vec<u8> = self.buf.drain(..end).collect();
                if let Some(block) = self.parse(&event)? {
                    return Ok(Some(block));
                }
                continue;
            }
            match self.body.next().await {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(ClientError::Unavailable {
                        deadline: std::time::Duration::ZERO,
                        last: format!("{}: {e}", self.url),
                    })
                }
                Some(Ok(chunk)) => {
                    if self.buf.len() + chunk.len() > EVENT_BYTES_MAX {
                        return Err(ClientError::Protocol {
                            url: self.url.clone(),
                            message: format!("an event is over {EVENT_BYTES_MAX} bytes"),
                        });
                    }
                    self.buf.extend_from_slice(&chunk);
                }
            }
        }
    }

    fn parse(&self, event: &[u8]) -> Result<Option<CertifiedBlock>, ClientError> {
        let text = String::from_utf8_lossy(event);
        let data: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|l| l.trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        if data.is_empty() {
            return Ok(None); // a comment or keep-alive
        }
        serde_json::from_str(&data)
            .map(Some)
            .map_err(|e| ClientError::Protocol {
                url: self.url.clone(),
                message: format!("a stream event is not a block: {e}"),
            })
    }
}

/// The end (exclusive) of the first complete event: a blank line.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2)
}

#[cfg(test)]
mod tests {
    use super::find_event_end;

    #[test]
    fn an_event_ends_at_a_blank_line() {
        assert_eq!(find_event_end(b"data: {}\n\nrest"), Some(10));
        assert_eq!(find_event_end(b"data: {}\n"), None);
    }
}
