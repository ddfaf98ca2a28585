//! Behaviour 9: malformed packets, other opcodes and responses never crash the server.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::harness::{Setup, query, udp_raw};
use crate::upstream::{self, Upstream};

const FROM: &str = "127.0.0.1:0";

fn packet(name: &str) -> Vec<u8> {
    query(name, RecordType::A).to_vec().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_packets_get_formerr_or_nothing_and_the_server_lives_on() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();
    let server = sinkhole.addr;

    // Too short for a header: dropped.
    assert!(udp_raw(server, &[0x12, 0x34, 0x01], FROM).await.is_none());

    // A response (QR set): ignored, so two servers cannot loop.
    let mut response = packet(upstream::WWW);
    response[2] |= 0x80;
    assert!(udp_raw(server, &response, FROM).await.is_none());

    // Truncated question: FORMERR with the query's ID.
    let whole = packet(upstream::WWW);
    let cut = &whole[..whole.len() - 3];
    let answer = Message::from_vec(&udp_raw(server, cut, FROM).await.unwrap()).unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(answer.metadata.id, u16::from_be_bytes([whole[0], whole[1]]));

    // Two questions: FORMERR.
    let mut two = packet(upstream::WWW);
    two[5] = 2;
    let answer = Message::from_vec(&udp_raw(server, &two, FROM).await.unwrap()).unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);

    // A label running past the end, and random bytes after a valid header.
    let mut garbage = whole[..12].to_vec();
    garbage.extend_from_slice(&[63, b'a', b'b']);
    let answer = Message::from_vec(&udp_raw(server, &garbage, FROM).await.unwrap()).unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);

    // The server still answers.
    let answer = sinkhole.udp("posdteu.shop", RecordType::A).await;
    assert_eq!(answer.answers.len(), 1);
    assert!(!sinkhole.log().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn other_opcodes_get_notimp_and_new_edns_versions_get_badvers() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();

    for opcode in [1u8, 2, 4, 5] {
        let mut other = packet(upstream::WWW);
        other[2] = (other[2] & 0x87) | (opcode << 3);
        let answer =
            Message::from_vec(&udp_raw(sinkhole.addr, &other, FROM).await.unwrap()).unwrap();
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::NotImp,
            "opcode {opcode}"
        );
        assert_eq!(u8::from(answer.metadata.op_code), opcode, "opcode echoed");
    }

    let mut versioned = packet(upstream::WWW);
    versioned[11] = 1;
    versioned.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 1, 0, 0, 0, 0]);
    let bytes = udp_raw(sinkhole.addr, &versioned, FROM).await.unwrap();
    let answer = Message::from_vec(&bytes).unwrap();
    assert_eq!(u16::from(answer.metadata.response_code), 16, "BADVERS");
    assert_eq!(answer.edns.as_ref().unwrap().version(), 0);
    assert!(
        upstream.asked().is_empty(),
        "nothing malformed went upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn zone_transfers_and_other_classes_are_refused() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();
    let answer = sinkhole.tcp("example.test", RecordType::AXFR).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);

    let mut chaos = packet("version.bind");
    let len = chaos.len();
    chaos[len - 1] = 3;
    let bytes = udp_raw(sinkhole.addr, &chaos, FROM).await.unwrap();
    let answer = Message::from_vec(&bytes).unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_garbage_closes_only_that_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();

    let mut stream = tokio::net::TcpStream::connect(sinkhole.addr).await.unwrap();
    // A header with no question.
    stream
        .write_all(&[0, 12, 0xbe, 0xef, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(
        Message::from_vec(&buf).unwrap().metadata.response_code,
        ResponseCode::FormErr
    );
    stream.write_all(&[0, 0]).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(crate::harness::WAIT, stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "zero-length message closes the connection");

    let answer = sinkhole.tcp(upstream::WWW, RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
}
