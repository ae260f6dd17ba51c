export { createServer, ShoalServer } from './server.js';
export type { ServerState, ListenOptions, ServerStats, ServerCounters, DrainReport, BudgetName } from './server.js';
export type { PushCounters } from './push.js';
export { Connection } from './connection.js';
export type { ConnState, Budget, ConnectionCounters } from './connection.js';
export { connect, Client } from './client.js';
export type { ClientOptions, ClientStats, Endpoint } from './client.js';
export { DEFAULTS, resolveOptions } from './options.js';
export type { ServerOptions, ResolvedOptions, AdminOptions, ResolvedAdminOptions, Codec, ErrorPolicy, Logger, RoutingOptions, ProxyProtocolOptions } from './options.js';
export { ProxyHeaderDecoder, encodeProxyV1, encodeProxyV2 } from './edge/proxy-protocol.js';
export type { ProxyHeader, ProxyTlv, ProxyEndpoint, ProxyMode, ProxyDecodeResult, EncodeV2Options } from './edge/proxy-protocol.js';
export type { TlsOptions, PemSource } from './edge/tls.js';
export * from './errors.js';
export {
  FrameReader,
  createFraming,
  encodeFrame,
  isFraming,
  LengthFieldDecoder,
  LengthFieldEncoder,
  DelimiterDecoder,
  DelimiterEncoder,
  FixedLengthDecoder,
  FixedLengthEncoder,
  RawDecoder,
  RawEncoder,
  RespDecoder,
  RespEncoder,
  RESP_DEFAULTS,
  parseCommand,
  commandIs,
} from './framing/index.js';
export type { ResolvedRespOptions } from './framing/index.js';
export { resp, encodeResp } from './resp.js';
export { MAIN_THREAD } from './dispatch/affinity.js';
export type { AffinityKeyValue } from './dispatch/affinity.js';
export type { Push, PushOp } from './dispatch/push-wire.js';
export type { FramedBytes } from './dispatch/types.js';
export type { RespValue, RespReply } from './resp.js';
export type * from './framing/types.js';
export type {
  HandlerContext,
  BroadcastOptions,
  Handler,
  HandlerFor,
  HandlerModule,
  HandlerResult,
  ReplyValue,
  CodecMessage,
  Routes,
  SetupInfo,
  ErrorReply,
} from './handler.js';
export { handleSignals, handleReloadSignal, reloadAll } from './shutdown.js';
export type { SwapReport as ReloadReport } from './dispatch/swap.js';
