// @huddle/client: the public surface. Everything an application needs is
// re-exported here; the files behind it each own one concept.

export { DocumentBinding } from './binding.js';
export type { BindingStatus, DocumentBindingEvents, SharedPosition, TextChange, TextChangeSource } from './binding.js';
export { HuddleClient, createClient } from './client.js';
export type { HuddleClientOptions } from './client.js';
export { HuddleError, isRetryable } from './errors.js';
export type { ClientErrorCode, ErrorCode } from './errors.js';
export { TypedEmitter } from './events.js';
export type {
  AnyEvent,
  DisconnectInfo,
  HuddleEvents,
  Listener,
  MessageSource,
  ReconnectingInfo,
  RoomJoined,
  RoomPush,
} from './events.js';
export { newClientMsgId } from './messages.js';
export { applyDiff, mergePage, withMember, withoutMember } from './presence.js';
export type { HistoryOptions, SendOptions } from './messages.js';
export {
  applyOp,
  codePointLength,
  codePointOffset,
  codeUnitOffset,
  composeOps,
  diffOp,
  normalizeOp,
  opBaseLength,
  opsEqual,
  parseOp,
  positionBefore,
  replaceAllOp,
  transformOp,
  transformPosition,
} from './ot.js';
export type { OpComponent, OpSide, TextOp } from './ot.js';
export { CloseCode, PROTOCOL_VERSION, parseRoomName, roomName } from './protocol.js';
export type {
  AckData,
  AwarenessEntry,
  AwarenessState,
  Chat,
  ChatJoinAck,
  ConnectData,
  Document,
  DocumentChange,
  DocumentJoinAck,
  ErrorDetails,
  HistoryAck,
  JoinedUser,
  Member,
  Message,
  PresencePage,
  PushMap,
  Ref,
  RequestData,
  RequestEvent,
  RequestMap,
  Role,
  RoomKind,
  RoomName,
  ServerErrorCode,
  SessionUpdateData,
} from './protocol.js';
export type { RequestOptions } from './requests.js';
export { DEFAULT_RECONNECT, backoffDelay } from './socket.js';
export type { ReconnectOptions, WebSocketConstructor, WebSocketLike } from './socket.js';
export type { ChatRoomState, ClientState, ConnectionStatus, DocumentRoomState, RoomState, RoomStatus, Session } from './state.js';
export type { TokenSource } from './tokens.js';
