// Who is in a room, as the client keeps it: the members a join listed, kept
// up to date by `user:joined` / `user:left` (small rooms) and `presence:diff`
// (rooms above the server's `presence_max_instant`), plus pages fetched with
// `presence:list`. Everything here is a pure function over a member list kept
// in user id order (the server's order); the room manager applies them.
//
// The server's rules make these set operations safe to apply in any room:
// a diff may name a user the list already has (or lacks), and applying it
// must leave the list as the server has it.

import type { JoinedUser, Member, PresencePage } from './protocol.js';

/** Code-unit order, as the server sorts user ids (its strings compare byte-wise; UTF-16 differs only outside the BMP). */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Members after `user:joined` (or a diff's joined entry): added once, in order. */
export function withMember(members: readonly Member[], userId: string, name: string | undefined): Member[] {
  if (members.some((m) => m.user_id === userId)) return [...members];
  const member: Member = { user_id: userId, connections: 1 };
  if (name !== undefined) member.name = name;
  const at = members.findIndex((m) => compare(m.user_id, userId) > 0);
  return at < 0 ? [...members, member] : [...members.slice(0, at), member, ...members.slice(at)];
}

/** Members after `user:left`. */
export function withoutMember(members: readonly Member[], userId: string): Member[] {
  return members.filter((m) => m.user_id !== userId);
}

/** Members after a `presence:diff`: its `left` removed, its `joined` added. */
export function applyDiff(members: readonly Member[], diff: { joined: readonly JoinedUser[]; left: readonly string[] }): Member[] {
  const left = new Set(diff.left);
  let next = members.filter((m) => !left.has(m.user_id));
  for (const user of diff.joined) next = withMember(next, user.user_id, user.name);
  return next;
}

/**
 * Members after a page of `presence:list` that started after `after` (from
 * the first user when `undefined`): the page is the truth for its range of
 * user ids (up to its last user, or to the end when it has no more), so
 * members in that range that the page lacks are gone.
 */
export function mergePage(members: readonly Member[], page: PresencePage, after: string | undefined): Member[] {
  const last = page.members[page.members.length - 1]?.user_id;
  const inRange = (id: string): boolean =>
    (after === undefined || compare(id, after) > 0) && (!page.has_more || last === undefined || compare(id, last) <= 0);
  const kept = members.filter((m) => !inRange(m.user_id));
  return [...kept, ...page.members].sort((a, b) => compare(a.user_id, b.user_id));
}
