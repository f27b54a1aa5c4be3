//! Primitive codecs in one run: the routing view against full `serde_json` and `simd-json` decodes
//! (250-byte contentInstance create, 4 KiB retrieve response), CBOR decode/encode with minicbor
//! against ciborium, XML decode/encode, and JSON → CBOR transcoding.

use std::hint::black_box;

#[path = "support/profiler.rs"]
mod profiler;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use m2m_primitive::{Format, RoutingView, cbor, codec, json};

/// A contentInstance create of about 250 bytes.
fn cin_create() -> Vec<u8> {
    let body = br#"{"op":1,"to":"cse-in/meter01/readings","fr":"Cmeter01","rqi":"q-000123","rvi":"3","ty":4,"rqet":"20991231T235959","pc":{"m2m:cin":{"cnf":"application/json:0","lbl":["site:berlin","kind:meter"],"con":"{\"kWh\":12.5,\"V\":229.8,\"A\":3.1,\"ts\":1764156059}"}}}"#;
    body.to_vec()
}

/// A retrieve response of about 4 KiB: a container with child references and a long `con`.
fn retrieve_response() -> Vec<u8> {
    let mut children = String::new();
    for i in 0..56 {
        if i > 0 {
            children.push(',');
        }
        children.push_str(&format!(
            r#"{{"nm":"cin_{i:04}","typ":4,"val":"cse-in/meter01/readings/cin_{i:04}"}}"#
        ));
    }
    let body = format!(
        r#"{{"rsc":2000,"rqi":"q-000124","rvi":"3","fr":"/id-in","to":"Cmeter01","ot":"20261126T112059,553471","pc":{{"m2m:cnt":{{"rn":"readings","ty":3,"ri":"cnt7Hq2","pi":"Cmeter01","mni":100,"mbs":100000,"cni":56,"cbs":1680,"st":56,"lbl":["site:berlin"],"ct":"20261126T112100","lt":"20261126T112100","et":"20311125T112059","ch":[{children}]}}}}}}"#
    );
    assert!((3500..5000).contains(&body.len()), "{}", body.len());
    body.into_bytes()
}

/// The JSON routing view of `doc` (its `rqi` read, as the relay does).
fn bench_routing_view(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    doc: &[u8],
) {
    group.bench_with_input(BenchmarkId::new("routing view", name), doc, |b, d| {
        b.iter(|| {
            RoutingView::parse(Format::Json, black_box(d))
                .unwrap()
                .rqi
                .map(|r| r.len())
        })
    });
}

/// The saturation rows' primitives (`m2m-loadgen pipeline` and `responder`): what the edge reads
/// most often when it is the bottleneck.
fn small_primitives(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing_view_small");
    for (name, doc) in [
        (
            "retrieve_request",
            br#"{"op":2,"to":"cse-in/Cpipe17","fr":"Cpipe17","rqi":"17-5","rvi":"3"}"#.to_vec(),
        ),
        (
            "response",
            br#"{"rsc":2000,"rqi":"17-5","rvi":"3"}"#.to_vec(),
        ),
    ] {
        group.throughput(Throughput::Elements(1));
        bench_routing_view(&mut group, name, &doc);
    }
    group.finish();
}

fn routing_view_vs_full_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("json_decode");
    for (name, doc) in [
        ("cin_create_250B", cin_create()),
        ("retrieve_rsp_4KiB", retrieve_response()),
    ] {
        group.throughput(Throughput::Bytes(doc.len() as u64));
        bench_routing_view(&mut group, name, &doc);
        group.bench_with_input(BenchmarkId::new("serde_json Value", name), &doc, |b, d| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(d)).unwrap())
        });
        let mut scratch = doc.clone();
        let mut buffers = simd_json::Buffers::default();
        group.bench_with_input(
            BenchmarkId::new("simd-json OwnedValue", name),
            &doc,
            |b, d| {
                b.iter(|| {
                    scratch.clear();
                    scratch.extend_from_slice(d);
                    simd_json::to_owned_value_with_buffers(black_box(&mut scratch), &mut buffers)
                        .unwrap()
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("m2m primitive (simd-json)", name),
            &doc,
            |b, d| b.iter(|| codec::decode(Format::Json, black_box(d)).unwrap()),
        );
    }
    group.finish();
}

fn cbor_and_xml(c: &mut Criterion) {
    let mut group = c.benchmark_group("cbor_xml");
    for (name, doc) in [
        ("cin_create_250B", cin_create()),
        ("retrieve_rsp_4KiB", retrieve_response()),
    ] {
        let value = json::decode(&doc).unwrap();
        let prim = codec::decode(Format::Json, &doc).unwrap();
        let mut cbor_bytes = Vec::new();
        cbor::encode(&value, &mut cbor_bytes);
        let xml_bytes = codec::encode(&prim, Format::Xml).unwrap();
        group.throughput(Throughput::Bytes(cbor_bytes.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("cbor decode minicbor", name),
            &cbor_bytes,
            |b, d| b.iter(|| cbor::decode(black_box(d)).unwrap()),
        );
        group.bench_with_input(
            BenchmarkId::new("cbor decode ciborium", name),
            &cbor_bytes,
            |b, d| b.iter(|| cbor::ciborium_decode(black_box(d)).unwrap()),
        );
        let mut out = Vec::with_capacity(8192);
        group.bench_with_input(
            BenchmarkId::new("cbor encode minicbor", name),
            &value,
            |b, v| {
                b.iter(|| {
                    out.clear();
                    cbor::encode(black_box(v), &mut out);
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("cbor encode ciborium", name),
            &value,
            |b, v| {
                b.iter(|| {
                    out.clear();
                    cbor::ciborium_encode(black_box(v), &mut out);
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("cbor routing view", name),
            &cbor_bytes,
            |b, d| {
                b.iter(|| {
                    RoutingView::parse(Format::Cbor, black_box(d))
                        .unwrap()
                        .rqi
                        .map(|r| r.len())
                })
            },
        );
        group.throughput(Throughput::Bytes(xml_bytes.len() as u64));
        group.bench_with_input(BenchmarkId::new("xml decode", name), &xml_bytes, |b, d| {
            b.iter(|| codec::decode(Format::Xml, black_box(d)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("xml encode", name), &prim, |b, p| {
            b.iter(|| {
                out.clear();
                codec::encode_into(black_box(p), Format::Xml, &mut out).unwrap();
            })
        });
        group.bench_with_input(
            BenchmarkId::new("xml routing view", name),
            &xml_bytes,
            |b, d| {
                b.iter(|| {
                    RoutingView::parse(Format::Xml, black_box(d))
                        .unwrap()
                        .rqi
                        .map(|r| r.len())
                })
            },
        );
        group.throughput(Throughput::Bytes(doc.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("transcode json->cbor", name),
            &doc,
            |b, d| b.iter(|| codec::transcode(black_box(d), Format::Json, Format::Cbor).unwrap()),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = profiler::config();
    targets = small_primitives, routing_view_vs_full_decode, cbor_and_xml
}
criterion_main!(benches);
