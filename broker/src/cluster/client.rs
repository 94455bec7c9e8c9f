//! A broker's side of the controller protocol: finds the active controller from the quorum
//! list (following `NotController` hints, trying the next voter when one is unreachable) and
//! sends it requests, one at a time, over TCP with rkyv frames, through the controller
//! listener's TLS and SASL when its `ClientSide` says so (`transport::connect`).

use super::protocol::{
    read_frame, write_frame, ControllerFrame, ControllerRequest, ControllerResponse,
};
use super::security::ClientSide;
use super::transport::{self, ControllerStream};
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
const IO_TIMEOUT: Duration = Duration::from_secs(11);
const RETRY_DELAY: Duration = Duration::from_millis(50);

pub struct ControllerClient {
    quorum: Vec<(u64, String)>,
    /// The voter to ask next (index into `quorum`) and the open connection to it.
    target: usize,
    stream: Option<ControllerStream>,
    /// What each new connection does before it speaks (TLS, SASL).
    security: ClientSide,
}

impl ControllerClient {
    /// A client of a PLAINTEXT controller port.
    pub fn new(quorum: Vec<(u64, String)>) -> Self {
        Self::with_security(quorum, ClientSide::default())
    }

    /// A client whose connections do what `security` says.
    pub fn with_security(quorum: Vec<(u64, String)>, security: ClientSide) -> Self {
        assert!(!quorum.is_empty());
        ControllerClient {
            quorum,
            target: 0,
            stream: None,
            security,
        }
    }

    /// Sends `request` to voter `node` only.
    pub fn request_to(
        &mut self,
        node: u64,
        request: &ControllerRequest,
    ) -> Result<ControllerResponse, String> {
        let index = self
            .quorum
            .iter()
            .position(|(id, _)| *id == node)
            .ok_or_else(|| format!("node {node} is not a voter"))?;
        if self.target != index {
            self.target = index;
            self.stream = None;
        }
        self.exchange(request)
            .map_err(|e| format!("controller {node}: {e}"))
    }

    /// Sends `request` to the active controller, retrying until `deadline`: an answer other
    /// than `NotController`, or the last error.
    pub fn request(
        &mut self,
        request: &ControllerRequest,
        deadline: Instant,
    ) -> Result<ControllerResponse, String> {
        loop {
            let failure = match self.exchange(request) {
                Ok(ControllerResponse::NotController { leader }) => {
                    self.follow(leader);
                    "no active controller".to_owned()
                }
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    self.next();
                    e.to_string()
                }
            };
            if Instant::now() >= deadline {
                return Err(failure);
            }
            std::thread::sleep(RETRY_DELAY);
        }
    }

    /// The voter the next request goes to (after a success: the active controller).
    pub fn target(&self) -> u64 {
        self.quorum[self.target].0
    }

    fn follow(&mut self, leader: Option<u64>) {
        match leader.and_then(|l| self.quorum.iter().position(|(id, _)| *id == l)) {
            Some(index) if index != self.target => {
                self.target = index;
                self.stream = None;
            }
            _ => self.next(),
        }
    }

    fn next(&mut self) {
        self.target = (self.target + 1) % self.quorum.len();
        self.stream = None;
    }

    fn exchange(&mut self, request: &ControllerRequest) -> std::io::Result<ControllerResponse> {
        if self.stream.is_none() {
            let address = &self.quorum[self.target].1;
            let stream = transport::connect(address, &self.security, CONNECT_TIMEOUT, IO_TIMEOUT)?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        let result = write_frame(stream, &ControllerFrame::Request(request.clone()))
            .and_then(|()| read_frame(stream));
        match result {
            Ok(ControllerFrame::Response(answer)) => Ok(answer),
            Ok(_) => {
                self.stream = None;
                Err(std::io::Error::other("unexpected controller frame"))
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }
}
