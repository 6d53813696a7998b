// The message manager: what the application sends into rooms. Chat sends are
// idempotent (each carries a `client_msg_id`), so they wait out a lost
// connection and are sent again after the rejoin, and the server stores each
// one once. Document updates are not retried: a lost connection rejects them,
// and the caller decides with the reloaded document in hand.

import type { Chat, Document, HistoryAck, Message, Role } from './protocol.js';
import type { Requester, RoomManager } from './rooms.js';

export interface SendOptions {
  /**
   * Idempotency key (at most 64 characters). Generated when absent; pass your
   * own to retry a send whose promise failed without creating a duplicate.
   */
  clientMsgId?: string;
  /** Time for the answer once the message is on the wire. */
  timeoutMs?: number;
}

export interface HistoryOptions {
  /** Page just before this seq; default: the newest. */
  beforeSeq?: number;
  /** 1 to 100, default 50. */
  limit?: number;
}

export class MessageManager {
  constructor(
    private readonly request: Requester,
    private readonly rooms: RoomManager,
    private readonly currentUser: () => string | undefined,
  ) {}

  /**
   * Sends a chat message; resolves with the stored message once the server
   * has committed it. While disconnected it waits and goes out after the
   * chat is joined again.
   */
  async sendMessage(chatId: string, content: string, options: SendOptions = {}): Promise<Message> {
    const clientMsgId = options.clientMsgId ?? newClientMsgId();
    this.rooms.adjustPending(chatId, +1);
    try {
      const ack = await this.request(
        'chat:message',
        { chat_id: chatId, content, client_msg_id: clientMsgId },
        { retry: true, offline: 'hold', ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }) },
      );
      return ack.message;
    } finally {
      this.rooms.adjustPending(chatId, -1);
    }
  }

  /**
   * Replaces a document's content. `version` is the version this update
   * creates (the current one + 1). Resolves with the new version; rejects with
   * VERSION_CONFLICT (`details.current_version`) when someone was first.
   */
  async updateDocument(documentId: string, content: string, version: number): Promise<number> {
    const ack = await this.request('documents:update', { document_id: documentId, content, version });
    this.rooms.documentSaved(documentId, content, ack.version, this.currentUser());
    return ack.version;
  }

  async createDocument(documentId: string, fields: { title?: string; content?: string } = {}): Promise<Document> {
    const ack = await this.request('documents:create', { document_id: documentId, ...fields });
    return ack.document;
  }

  /** Grants `role` on a document to a user; `none` revokes. */
  async shareDocument(documentId: string, userId: string, role: Role | 'none'): Promise<void> {
    await this.request('documents:share', { document_id: documentId, user_id: userId, role });
  }

  async createChat(chatId: string, options: { private?: boolean; members?: string[] } = {}): Promise<Chat> {
    const ack = await this.request('chat:create', { chat_id: chatId, ...options });
    return ack.chat;
  }

  /** A page of older messages (not announced as events: the caller asked). */
  history(chatId: string, options: HistoryOptions = {}): Promise<HistoryAck> {
    const data: { chat_id: string; before_seq?: number; limit?: number } = { chat_id: chatId };
    if (options.beforeSeq !== undefined) data.before_seq = options.beforeSeq;
    if (options.limit !== undefined) data.limit = options.limit;
    return this.request('chat:history', data, { retry: true });
  }
}

/** A random id for `client_msg_id`: a UUID where the platform has one. */
export function newClientMsgId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c !== undefined && typeof c.randomUUID === 'function') return c.randomUUID();
  let id = '';
  for (let i = 0; i < 4; i++) id += Math.floor(Math.random() * 0x100000000).toString(16).padStart(8, '0');
  return id;
}
