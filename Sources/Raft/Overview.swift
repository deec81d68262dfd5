// The Raft module: etcd's raft (3.4) semantics as a pure state machine, in Swift.
//
// Shape
//   RawNode (RawNode.swift)      the caller's handle: tick/campaign/propose/step/readIndex/
//                                transferLeader in, `Ready` out, `advance` back.
//   RaftCore (RaftCore.swift)    the algorithm: one step function per role
//                                (stepLeader/stepCandidate/stepFollower) behind `step`,
//                                which does the term bookkeeping they share.
//   RaftLog (RaftLog.swift)      stable storage + unstable tail, commit and apply cursors.
//   Progress (Progress.swift)    the leader's view of each peer: probe/replicate/snapshot
//                                states, in-flight window; the configuration and votes.
//   ReadOnlyQueue (ReadOnly.swift) ReadIndex requests waiting for a heartbeat quorum.
//   RaftStorage, MemoryStorage (Storage.swift) what the caller persisted, read back.
// No I/O, no clock (time is `tick()`), no threads, no randomness but a seeded SplitMix64.
// Messages and entries are raftpb types with etcd's MessageType values.
//
// The Ready contract (see `Ready`): process one Ready fully, then `advance`, then the
// next `ready()`. `messages` may leave at once (a leader's appends/heartbeats, sent in
// parallel with its own write); persist snapshot, entries and hard state (fsync if
// `mustSync`); then send `messagesAfterPersist` (votes, acknowledgements, everything a
// non-leader says); apply `committedEntries` (already durable here) in order.
//
// Where this differs from etcd 3.4's raft (all on the side of safety; none is visible on
// the wire except the rejection hint, which both sides understand):
//   - A leader counts its own log towards the commit quorum only once the caller has
//     persisted it (etcd counts it at append time), so no commit index ever leaves a
//     node before the entries it covers are durable there.
//   - `committedEntries` only holds entries already durable here (etcd may hand out
//     entries persisted by the same Ready), so applying never waits for the disk.
//   - Messages come in two lists that say which may overtake persistence; etcd 3.4 hands
//     out one list and the server decides by role. Even a leader's messages wait when its
//     term or vote is not yet durable (a single voter electing itself).
//   - MsgAppResp rejections carry etcd 3.5's hint (RejectHint = a probe index, LogTerm =
//     its term), and the leader skips whole terms with it; a 3.4 leader reads the same
//     hint as "last index" (still correct), and a 3.4 follower's hint (LogTerm 0) is
//     read as before.
//   - A single voter answers ReadIndex only after committing an entry of its term, like
//     any leader (etcd answers at once).
//   - Invalid conf changes (removing the last voter) are ignored instead of panicking;
//     joint consensus (ConfChangeV2, joint ConfStates) is not supported: etcd 3.4's
//     server only uses single-step ConfChange.
//   - An empty MsgProp from a peer is refused with `RaftError.proposalDropped` (etcd panics).
// Not done: etcd's logging; TickQuiesced; ProposeConfChange for ConfChangeV2.
