//! Logs, traces and metrics: the tracing subscriber (`RUST_LOG`, `LOG_FORMAT`), the
//! OpenTelemetry tracer and meter providers exporting over OTLP/gRPC when an endpoint is
//! set, and the [`Carrier`] that keeps a W3C trace context with work that outlives a
//! request (with its stored JSON form).
//!
//! It never decides what is traced: services open spans, the gRPC layers in
//! [`crate::grpc`] open one per call. Export failures are never logged back into the
//! exporting layer (that would feed itself).

use crate::settings::{CommonSettings, LogFormat};
use opentelemetry::{
    Key, KeyValue, global,
    propagation::{Extractor, TextMapPropagator},
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource, metrics::SdkMeterProvider, propagation::TraceContextPropagator, trace::SdkTracerProvider,
};
use std::{collections::HashMap, time::Duration};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// Targets whose events never go to the OpenTelemetry layer: the exporter's own
/// transport would otherwise trace its own exports.
const NOT_EXPORTED: &str = "opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,tonic=off,h2=off,hyper=off,hyper_util=off,tower=off";

/// Flushes and stops the providers when dropped (or on [`Telemetry::shutdown`]).
#[must_use = "dropping the guard stops exporting"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the providers.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tracer) = self.tracer.take()
            && let Err(error) = tracer.shutdown_with_timeout(Duration::from_secs(5))
        {
            eprintln!("trace export did not flush: {error}");
        }
        if let Some(meter) = self.meter.take()
            && let Err(error) = meter.shutdown()
        {
            eprintln!("metric export did not flush: {error}");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Installs the global subscriber and, with an OTLP endpoint, the tracer and meter
/// providers. Must run inside a Tokio runtime. The W3C trace-context propagator is set in
/// any case, so context crosses services even when this one does not export.
pub fn init(settings: &CommonSettings, default_service_name: &str) -> anyhow::Result<Telemetry> {
    init_with_writer(settings, default_service_name, std::io::stdout)
}

/// [`init`] with log lines written to `writer` instead of stdout (tests capture them).
pub fn init_with_writer<W>(
    settings: &CommonSettings,
    default_service_name: &str,
    writer: W,
) -> anyhow::Result<Telemetry>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    global::set_text_map_propagator(TraceContextPropagator::new());
    let service_name = settings.otel_service_name.clone().unwrap_or_else(|| default_service_name.to_string());
    let filter = EnvFilter::try_new(&settings.rust_log)?;
    let fmt = match settings.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_writer(writer).with_target(true).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    }
    .with_filter(filter)
    .with_filter(tracing_subscriber::filter::filter_fn(no_statement_parameters));

    let mut telemetry = Telemetry { tracer: None, meter: None };
    let otel_layer = match &settings.otel_endpoint {
        Some(endpoint) => {
            let resource = Resource::builder()
                .with_service_name(service_name.clone())
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .with_attribute(KeyValue::new("service.instance.id", instance_id()))
                .build();
            let spans = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(Duration::from_secs(5))
                .build()?;
            let tracer_provider =
                SdkTracerProvider::builder().with_resource(resource.clone()).with_batch_exporter(spans).build();
            let metrics = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(Duration::from_secs(5))
                .build()?;
            let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(metrics)
                .with_interval(Duration::from_secs(10))
                .build();
            let meter_provider = SdkMeterProvider::builder().with_resource(resource).with_reader(reader).build();
            global::set_meter_provider(meter_provider.clone());
            let tracer = tracer_provider.tracer(service_name);
            global::set_tracer_provider(tracer_provider.clone());
            telemetry.tracer = Some(tracer_provider);
            telemetry.meter = Some(meter_provider);
            let export_filter = EnvFilter::try_new(format!("info,{NOT_EXPORTED}"))?;
            Some(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(export_filter))
        }
        None => None,
    };
    tracing_subscriber::registry().with(fmt).with(otel_layer).try_init()?;
    Ok(telemetry)
}

/// Whether an event may be logged at all: never the database driver's debug and trace
/// lines, which carry statements' parameters (guests' names, emails, phones, notes), at
/// whatever level `RUST_LOG` asks for.
fn no_statement_parameters(metadata: &tracing::Metadata<'_>) -> bool {
    !(metadata.target().starts_with("tokio_postgres") && *metadata.level() > tracing::Level::INFO)
}

/// `service.instance.id` of this process: the one set in `OTEL_RESOURCE_ATTRIBUTES`, else a
/// new UUID. Replicas of a service must differ in it, or a metrics backend merges their
/// series (the collector's Prometheus exporter makes it the `instance` label).
fn instance_id() -> String {
    Resource::builder()
        .build()
        .get(&Key::from_static_str("service.instance.id"))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), |id| id.to_string())
}

/// A W3C trace context (`traceparent`, `tracestate`) carried with work that runs later:
/// stored with a queued item, or sent along a stream. Its stored form is a JSON object
/// of strings ([`Carrier::to_json`], [`Carrier::from_json`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Carrier(HashMap<String, String>);

impl Carrier {
    /// An empty carrier (no context).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether it holds no context.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The stored form: a JSON object of strings.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.0.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))).collect(),
        )
    }

    /// A stored carrier; what is not a JSON object of strings is left out (tracing is best
    /// effort: an unreadable context only loses a span link).
    pub fn from_json(value: serde_json::Value) -> Self {
        match value {
            serde_json::Value::Object(map) => {
                Self(map.into_iter().filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string()))).collect())
            }
            _ => Self::new(),
        }
    }
}

impl From<HashMap<String, String>> for Carrier {
    fn from(map: HashMap<String, String>) -> Self {
        Self(map)
    }
}

impl From<Carrier> for HashMap<String, String> {
    fn from(carrier: Carrier) -> Self {
        carrier.0
    }
}

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The current span's W3C `traceparent` (and `tracestate`), to be stored with work that
/// runs later; empty when there is no sampled context.
pub fn current_context_carrier() -> Carrier {
    let mut carrier = Carrier::new();
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut carrier.0);
    }
    carrier
}

/// Adds a span link from `span` to the context in `carrier` (a [`Carrier`], or the
/// string map of a proto message); does nothing when the carrier holds none. Must be
/// called before the span is entered.
pub fn link_to_carrier(span: &tracing::Span, carrier: &dyn Extractor) {
    let context = TraceContextPropagator::new().extract(carrier);
    let linked = context.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// The trace id of the current span as 32 hex digits, for log lines and error messages.
pub fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_carrier_is_stored_as_a_json_object_of_strings() {
        let carrier = Carrier::from(HashMap::from([
            ("traceparent".to_string(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string()),
            ("tracestate".to_string(), "a=b".to_string()),
        ]));
        let stored = carrier.to_json();
        assert_eq!(
            stored,
            json!({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "a=b"})
        );
        assert_eq!(Carrier::from_json(stored), carrier);
        assert_eq!(Carrier::new().to_json(), json!({}));
    }

    #[test]
    fn an_unreadable_stored_carrier_loses_only_what_is_unreadable() {
        assert_eq!(Carrier::from_json(json!(null)), Carrier::new());
        assert_eq!(Carrier::from_json(json!(["traceparent"])), Carrier::new());
        let partly = Carrier::from_json(json!({"traceparent": "x", "odd": 5}));
        assert_eq!(HashMap::from(partly), HashMap::from([("traceparent".to_string(), "x".to_string())]));
    }
}
