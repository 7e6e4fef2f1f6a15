// The agent's side of the reverse-endpoint tests: the official Anthropic
// SDK, configured only by its environment (ANTHROPIC_BASE_URL is moat's
// endpoint, ANTHROPIC_API_KEY moat's placeholder). It prints one line per
// thing the test checks, at once, so the test sees each event as it comes.
//
// usage: node sdk-client.js SDK_DIR stream|abort|overloaded
'use strict';
const [sdkDir, mode] = process.argv.slice(2);
const sdk = require(sdkDir);
const Anthropic = sdk.default ?? sdk.Anthropic;

const say = (s) => process.stdout.write(s + '\n');
const params = (model) => ({
  model,
  max_tokens: 64,
  messages: [{ role: 'user', content: 'Say hello.' }],
  stream: true,
});

function describe(ev) {
  if (ev.type === 'content_block_delta' && ev.delta && ev.delta.type === 'text_delta') {
    return `event ${ev.type} ${JSON.stringify(ev.delta.text)}`;
  }
  return `event ${ev.type}`;
}

async function stream(client) {
  const { data, response } = await client.messages.create(params('moat-stream')).withResponse();
  say(`header x-echo-api-key=${response.headers.get('x-echo-api-key')}`);
  let text = '';
  for await (const ev of data) {
    say(describe(ev));
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
  }
  say(`text ${JSON.stringify(text)}`);
}

async function abort(client) {
  const ac = new AbortController();
  try {
    const s = await client.messages.create(params('moat-abort'), { signal: ac.signal });
    for await (const ev of s) {
      say(describe(ev));
      ac.abort(); // the user pressed Escape after the first event
    }
    // The SDK ends a stream it aborted without an error.
    say(`ended aborted=${ac.signal.aborted}`);
  } catch (err) {
    say(`ended aborted=${ac.signal.aborted} ${err.constructor.name}`);
  }
}

async function overloaded(client) {
  try {
    const s = await client.messages.create(params('moat-overloaded'));
    for await (const ev of s) say(describe(ev));
    say('no error');
  } catch (err) {
    const h = err.headers;
    const get = (k) => (h && typeof h.get === 'function' ? h.get(k) : h && h[k]);
    say(`error ${err.constructor.name} status=${err.status} type=${err.error?.error?.type}` +
      ` overloaded=${err instanceof Anthropic.OverloadedError} api=${err instanceof Anthropic.APIError}` +
      ` request-id=${get('request-id')} x-moat-error=${get('x-moat-error')}`);
  }
}

(async () => {
  const client = new Anthropic({ maxRetries: 0, timeout: 20000 });
  await { stream, abort, overloaded }[mode](client);
  say('done');
})().catch((err) => {
  say(`unexpected ${err && err.constructor && err.constructor.name}: ${err && err.message}`);
  process.exitCode = 1;
});
