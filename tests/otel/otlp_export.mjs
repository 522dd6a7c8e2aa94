// Exports spans to costmeshd with the OpenTelemetry JS SDK as an application
// would: a TracerProvider, a BatchSpanProcessor and the unmodified OTLP/HTTP
// exporter (JSON or protobuf). tests/integration/test_m_otlp.py runs it.
//
//   node otlp_export.mjs '{"url":"http://127.0.0.1:8080/v1/traces","key":"...",
//     "protocol":"json"|"proto","compression":"gzip"|"none","auth":"bearer"|"x-api-key",
//     "service":"svc","spans":[{"name":"chat","attrs":{...},"parent":0}]}'
//
// A span's "parent" is the index of an earlier span. Prints one JSON line:
// the trace id, each span's id, each export's result code (0 success, 1
// failure) and how long the flush took.
import { context, trace } from '@opentelemetry/api';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';

const cfg = JSON.parse(process.argv[2]);
const headers = cfg.auth === 'bearer' ? { Authorization: `Bearer ${cfg.key}` } : { 'x-api-key': cfg.key };
const Exporter = cfg.protocol === 'proto' ? ProtoExporter : JsonExporter;
const exporter = new Exporter({ url: cfg.url, headers, compression: cfg.compression ?? 'none',
                                timeoutMillis: cfg.timeoutMillis ?? 20000 });

// Observes each export's outcome through the SpanExporter interface; the
// exporter itself is untouched.
const results = [];
const observed = {
  export(spans, done) { exporter.export(spans, (r) => { results.push(r.code); done(r); }); },
  shutdown() { return exporter.shutdown(); },
  forceFlush() { return exporter.forceFlush(); },
};

const provider = new TracerProvider({
  resource: resourceFromAttributes({ 'service.name': cfg.service ?? 'costmesh-test' }),
  spanProcessors: [new BatchSpanProcessor({ exporter: observed, scheduledDelayMillis: 60000 })],
});
const tracer = provider.getTracer('costmesh-interop-test');

const spans = [];
for (const s of cfg.spans) {
  const ctx = s.parent === undefined || s.parent === null ? context.active()
    : trace.setSpan(context.active(), spans[s.parent]);
  spans.push(tracer.startSpan(s.name ?? 'chat', { attributes: s.attrs ?? {} }, ctx));
}
for (const s of [...spans].reverse()) s.end();

const t0 = Date.now();
await provider.forceFlush().catch(() => {}); // a failed export shows in results
const ms = Date.now() - t0;
await provider.shutdown();
console.log(JSON.stringify({
  traceIds: spans.map((s) => s.spanContext().traceId),
  spanIds: spans.map((s) => s.spanContext().spanId),
  results, ms,
}));
