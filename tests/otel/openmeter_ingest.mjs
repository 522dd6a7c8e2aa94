// Sends CloudEvents to costmeshd with @openmeter/sdk, unmodified, as an
// OpenMeter user would. tests/integration/test_m_otlp.py runs it.
//
//   node openmeter_ingest.mjs '{"baseUrl":"http://127.0.0.1:8080","key":"...","events":[{...}]}'
//
// The events go in one ingest call (one batch). Prints one JSON line: "ok"
// or the HTTP status the SDK threw.
import { OpenMeter } from '@openmeter/sdk';

const cfg = JSON.parse(process.argv[2]);
const om = new OpenMeter({ baseUrl: cfg.baseUrl, apiKey: cfg.key });
try {
  await om.events.ingest(cfg.events);
  console.log(JSON.stringify({ ok: true }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, status: e.status ?? e.response?.status ?? null, message: String(e) }));
}
