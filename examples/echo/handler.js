// The simplest shoal handler: every message comes back unchanged.
// Run: shoal start --handler examples/echo/handler.js
export default function echo(frame) {
  return frame;
}
