//! A real OTLP/gRPC receiver (the opentelemetry-proto collector services served by
//! tonic) that records every span and every metric the services export (name, unit, kind
//! and attribute keys: what a Prometheus exporter names its series by).

use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
        trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
    metrics::v1::metric::Data,
};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// One exported span, flattened for assertions.
#[derive(Clone, Debug)]
pub struct Span {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    /// OTLP span kind: 2 server, 3 client, 1 internal.
    pub kind: i32,
    pub attributes: HashMap<String, String>,
    /// (trace id, span id) of every link.
    pub links: Vec<(String, String)>,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// The OTLP data kinds a metric can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetricKind {
    Gauge,
    /// A monotonic sum (an OpenTelemetry counter).
    Counter,
    /// A non-monotonic sum (an up-down counter).
    UpDownCounter,
    Histogram,
    ExponentialHistogram,
    Summary,
}

/// One exported metric as a Prometheus exporter sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedMetric {
    pub service: String,
    pub name: String,
    pub unit: String,
    pub kind: MetricKind,
    /// Keys of the data points' attributes, over every export.
    pub attributes: BTreeSet<String>,
}

#[derive(Default)]
struct Store {
    /// Every export request as received (its Debug text), traces and metrics.
    raw: Mutex<Vec<String>>,
    spans: Mutex<Vec<Span>>,
    metrics: Mutex<BTreeMap<(String, String), ExportedMetric>>,
}

/// A running receiver.
pub struct Collector {
    pub endpoint: String,
    store: Arc<Store>,
    shutdown: CancellationToken,
}

impl Collector {
    /// Starts a receiver on a random loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let store = Arc::new(Store::default());
        let shutdown = CancellationToken::new();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(store.clone())))
            .add_service(MetricsServiceServer::new(Receiver(store.clone())))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                shutdown.clone().cancelled_owned(),
            );
        tokio::spawn(server);
        Self { endpoint, store, shutdown }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.store.spans.lock().expect("spans").clone()
    }

    /// (service name, metric name) of every metric received so far.
    pub fn metrics(&self) -> BTreeSet<(String, String)> {
        self.store.metrics.lock().expect("metrics").keys().cloned().collect()
    }

    /// The Debug text of every export request received so far: every span with its
    /// events and attributes, every metric with its labels, the resources.
    pub fn raw_exports(&self) -> Vec<String> {
        self.store.raw.lock().expect("raw").clone()
    }

    /// Every metric received so far, with its unit, kind and attribute keys.
    pub fn exported_metrics(&self) -> Vec<ExportedMetric> {
        self.store.metrics.lock().expect("metrics").values().cloned().collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct Receiver(Arc<Store>);

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.0.raw.lock().expect("raw").push(format!("{:?}", request.get_ref()));
        let mut spans = self.0.spans.lock().expect("spans");
        for resource in request.into_inner().resource_spans {
            let resource_attributes = attributes(&resource.resource.map(|r| r.attributes).unwrap_or_default());
            let service = resource_attributes.get("service.name").cloned().unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push(Span {
                        service: service.clone(),
                        name: span.name.clone(),
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        kind: span.kind,
                        attributes: attributes(&span.attributes),
                        links: span.links.iter().map(|l| (hex(&l.trace_id), hex(&l.span_id))).collect(),
                    });
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.0.raw.lock().expect("raw").push(format!("{:?}", request.get_ref()));
        let mut metrics = self.0.metrics.lock().expect("metrics");
        for resource in request.into_inner().resource_metrics {
            let resource_attributes = attributes(&resource.resource.map(|r| r.attributes).unwrap_or_default());
            let service = resource_attributes.get("service.name").cloned().unwrap_or_default();
            for scope in resource.scope_metrics {
                for metric in scope.metrics {
                    let Some((kind, attributes)) = metric.data.as_ref().map(kind_and_attribute_keys) else {
                        continue;
                    };
                    metrics
                        .entry((service.clone(), metric.name.clone()))
                        .or_insert_with(|| ExportedMetric {
                            service: service.clone(),
                            name: metric.name.clone(),
                            unit: metric.unit.clone(),
                            kind,
                            attributes: BTreeSet::new(),
                        })
                        .attributes
                        .extend(attributes);
                }
            }
        }
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A metric's kind and the attribute keys of its data points.
fn kind_and_attribute_keys(data: &Data) -> (MetricKind, BTreeSet<String>) {
    fn keys<'a>(points: impl Iterator<Item = &'a [KeyValue]>) -> BTreeSet<String> {
        points.flat_map(|attributes| attributes.iter().map(|kv| kv.key.clone())).collect()
    }
    match data {
        Data::Gauge(g) => (MetricKind::Gauge, keys(g.data_points.iter().map(|p| p.attributes.as_slice()))),
        Data::Sum(s) => (
            if s.is_monotonic { MetricKind::Counter } else { MetricKind::UpDownCounter },
            keys(s.data_points.iter().map(|p| p.attributes.as_slice())),
        ),
        Data::Histogram(h) => (MetricKind::Histogram, keys(h.data_points.iter().map(|p| p.attributes.as_slice()))),
        Data::ExponentialHistogram(h) => {
            (MetricKind::ExponentialHistogram, keys(h.data_points.iter().map(|p| p.attributes.as_slice())))
        }
        Data::Summary(s) => (MetricKind::Summary, keys(s.data_points.iter().map(|p| p.attributes.as_slice()))),
    }
}
