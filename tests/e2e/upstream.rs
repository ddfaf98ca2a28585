//! A real upstream: an in-process hickory-server authoritative for `test.`, that records every
//! query it gets, on UDP and TCP of one loopback port.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Edns, Metadata, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NULL, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponseBuilder, ZoneType};
use tokio::net::{TcpListener, UdpSocket};

/// One query as the upstream saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub name: String,
    pub qtype: RecordType,
    pub dnssec_ok: bool,
}

/// Names of the test zone, and what they hold.
pub const WWW: &str = "www.example.test";
pub const WWW_V4: [u8; 4] = [192, 0, 2, 10];
pub const SHORT_TTL: &str = "short.example.test";
pub const BIG_TXT: &str = "big.example.test";
pub const CLOAKED: &str = "cloak.example.test";
pub const CLOAK_LINK: &str = "edge.cdn.test";
pub const CLOAK_TARGET: &str = "c2.tracker.test";
pub const SAFE_CNAME: &str = "alias.example.test";
pub const SIGNED: &str = "signed.example.test";
pub const UPDATE: &str = "update.example.test";

struct Recording {
    catalog: Catalog,
    asked: Arc<Mutex<Vec<Asked>>>,
}

#[async_trait::async_trait]
impl RequestHandler for Recording {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let dnssec_ok = request
            .edns
            .as_ref()
            .is_some_and(|edns| edns.flags().dnssec_ok);
        if let Ok(info) = request.request_info() {
            let name = info.query.name().to_string();
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let qtype = info.query.query_type();
            self.asked.lock().unwrap().push(Asked {
                name: name.clone(),
                qtype,
                dnssec_ok,
            });
            if name == SIGNED {
                return signed_answer(request, dnssec_ok, &mut response).await;
            }
        }
        self.catalog.handle_request::<R, T>(request, response).await
    }
}

/// An answer with a (fake) RRSIG when the query had DO set, as a signed zone gives.
async fn signed_answer<R: ResponseHandler>(
    request: &Request,
    dnssec_ok: bool,
    response: &mut R,
) -> ResponseInfo {
    let name = Name::from_ascii(SIGNED).unwrap();
    let mut records = vec![Record::from_rdata(
        name.clone(),
        300,
        RData::A(A::new(192, 0, 2, 77)),
    )];
    if dnssec_ok {
        let rrsig = RData::Unknown {
            code: RecordType::RRSIG,
            rdata: NULL::with(vec![7; 40]),
        };
        records.push(Record::from_rdata(name, 300, rrsig));
    }
    let mut edns = Edns::new();
    edns.set_dnssec_ok(dnssec_ok);
    let mut builder = MessageResponseBuilder::from_message_request(request);
    builder.edns(&edns);
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.authoritative = true;
    metadata.response_code = ResponseCode::NoError;
    let message = builder.build(metadata, records.iter(), [], [], []);
    response.send_response(message).await.unwrap()
}

/// The running upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    asked: Arc<Mutex<Vec<Asked>>>,
    _server: Server<Recording>,
}

impl Upstream {
    pub async fn start() -> Self {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let mut catalog = Catalog::new();
        let origin = Name::from_ascii("test.").unwrap();
        let zone = InMemoryZoneHandler::<hickory_server::net::runtime::TokioRuntimeProvider>::new(
            origin.clone(),
            zone_records(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        )
        .unwrap();
        catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);

        let (udp, tcp) = bind_same_port().await;
        let addr = udp.local_addr().unwrap();
        let mut server = Server::new(Recording {
            catalog,
            asked: asked.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, std::time::Duration::from_secs(5), 65_535);
        Self {
            addr,
            asked,
            _server: server,
        }
    }

    /// Every query received so far.
    pub fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }

    /// How many times a name (any type) was asked.
    pub fn count(&self, name: &str) -> usize {
        self.asked()
            .iter()
            .filter(|asked| asked.name == name)
            .count()
    }
}

async fn bind_same_port() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            return (udp, tcp);
        }
    }
    panic!("no free port for the upstream");
}

fn name(text: &str) -> Name {
    Name::from_str(&format!("{text}.")).unwrap()
}

fn zone_records() -> BTreeMap<RrKey, RecordSet> {
    let soa = SOA::new(
        name("ns.test"),
        name("hostmaster.test"),
        2026,
        3600,
        600,
        86400,
        30,
    );
    let big: Vec<String> = (0..24)
        .map(|i| format!("{i:02}-{}", "x".repeat(57)))
        .collect();
    let records = [
        (name("test"), 3600, RData::SOA(soa)),
        (
            name(WWW),
            300,
            RData::A(A::from(std::net::Ipv4Addr::from(WWW_V4))),
        ),
        (
            name(WWW),
            300,
            RData::AAAA(AAAA::from_str("2001:db8::10").unwrap()),
        ),
        (name(SHORT_TTL), 2, RData::A(A::new(192, 0, 2, 20))),
        (name(UPDATE), 300, RData::A(A::new(192, 0, 2, 30))),
        (name(BIG_TXT), 300, RData::TXT(TXT::new(big))),
        (name(CLOAKED), 300, RData::CNAME(CNAME(name(CLOAK_LINK)))),
        (
            name(CLOAK_LINK),
            300,
            RData::CNAME(CNAME(name(CLOAK_TARGET))),
        ),
        (name(CLOAK_TARGET), 300, RData::A(A::new(192, 0, 2, 66))),
        (name(SAFE_CNAME), 300, RData::CNAME(CNAME(name(WWW)))),
    ];

    let mut sets: BTreeMap<RrKey, RecordSet> = BTreeMap::new();
    for (owner, ttl, data) in records {
        let record = Record::from_rdata(owner.clone(), ttl, data);
        let key = RrKey::new(LowerName::new(&owner), record.record_type());
        sets.entry(key)
            .or_insert_with(|| RecordSet::new(owner.clone(), record.record_type(), 0))
            .insert(record, 0);
    }
    sets
}
