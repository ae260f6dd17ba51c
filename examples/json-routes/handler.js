// A JSON service with routes (zinx-style message ids).
// Start: shoal start --handler examples/json-routes/handler.js --codec json --routing 4
// Each frame body is [u32 BE route id][JSON]; the reply carries the same route id.

let served = 0;

export function setup({ threadId }) {
  // Runs once per worker before it takes traffic (open pools, load models...).
  served = 0;
  void threadId;
}

export const routes = {
  // 1: add numbers -> { sum }
  1: (msg) => ({ sum: (msg.numbers ?? []).reduce((a, b) => a + b, 0) }),
  // 2: greet -> { greeting, connection }
  2: (msg, ctx) => ({ greeting: `hello, ${msg.name ?? 'stranger'}`, connection: ctx.connectionId }),
  // 3: async work -> { served } (handlers may return promises)
  3: async () => {
    await new Promise((r) => setTimeout(r, 1));
    return { served: ++served };
  },
};

// Under --on-handler-error error-frame, this shapes the error reply.
export function errorReply(error) {
  return { error: error.code, message: error.message };
}
