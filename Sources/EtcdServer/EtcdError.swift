import Lease
import MVCC

/// An error as etcd reports it to clients: a gRPC status code and etcd's exact message.
/// This file is the one catalogue of etcd's client-visible errors (etcd's
/// `api/v3rpc/rpctypes/error.go`); EtcdAPI turns an `EtcdError` into a gRPC status.
public struct EtcdError: Error, Sendable, Equatable, CustomStringConvertible {
    /// gRPC status codes, independent of any gRPC library.
    public enum Code: Int, Sendable {
        case canceled = 1, unknown = 2, invalidArgument = 3, deadlineExceeded = 4, notFound = 5
        case alreadyExists = 6, permissionDenied = 7, resourceExhausted = 8, failedPrecondition = 9
        case aborted = 10, outOfRange = 11, unimplemented = 12, `internal` = 13, unavailable = 14
        case dataLoss = 15, unauthenticated = 16
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    // Request validation (etcd checks these before proposing).
    public static let emptyKey = EtcdError(.invalidArgument, "etcdserver: key is not provided")
    public static let keyNotFound = EtcdError(.invalidArgument, "etcdserver: key not found")
    public static let valueProvided = EtcdError(.invalidArgument, "etcdserver: value is provided")
    public static let leaseProvided = EtcdError(.invalidArgument, "etcdserver: lease is provided")
    public static let tooManyOps = EtcdError(.invalidArgument, "etcdserver: too many operations in txn request")
    public static let duplicateKey = EtcdError(.invalidArgument, "etcdserver: duplicate key given in txn request")
    public static let requestTooLarge = EtcdError(.invalidArgument, "etcdserver: request is too large")

    // MVCC.
    public static let compacted = EtcdError(.outOfRange, "etcdserver: mvcc: required revision has been compacted")
    public static let futureRevision = EtcdError(.outOfRange, "etcdserver: mvcc: required revision is a future revision")
    public static let noSpace = EtcdError(.resourceExhausted, "etcdserver: mvcc: database space exceeded")

    // Lease.
    public static let leaseNotFound = EtcdError(.notFound, "etcdserver: requested lease not found")
    public static let leaseExists = EtcdError(.failedPrecondition, "etcdserver: lease already exists")
    public static let leaseTTLTooLarge = EtcdError(.outOfRange, "etcdserver: too large lease TTL")

    // Server state.
    public static let noLeader = EtcdError(.unavailable, "etcdserver: no leader")
    public static let stopped = EtcdError(.unavailable, "etcdserver: server stopped")
    public static let timeout = EtcdError(.unavailable, "etcdserver: request timed out")
    /// An entry applied to something other than its request's kind (a bug, never the client's).
    static let unexpectedApplyResult = EtcdError(.internal, "unexpected apply result")
    public static let timeoutDueToLeaderFail = EtcdError(
        .unavailable, "etcdserver: request timed out, possibly due to previous leader failure")
    public static let timeoutDueToConnectionLost = EtcdError(
        .unavailable, "etcdserver: request timed out, possibly due to connection lost")
    public static let corrupt = EtcdError(.dataLoss, "etcdserver: corrupt cluster")
    public static let notLeader = EtcdError(.failedPrecondition, "etcdserver: not leader")
    public static let leaderChanged = EtcdError(.unavailable, "etcdserver: leader changed")
    public static let unhealthy = EtcdError(.unavailable, "etcdserver: unhealthy cluster")
    public static let notSupportedForLearner = EtcdError(.unavailable, "etcdserver: rpc not supported for learner")
    public static let badLeaderTransferee = EtcdError(.failedPrecondition, "etcdserver: bad leader transferee")

    // Membership.
    public static let memberExists = EtcdError(.failedPrecondition, "etcdserver: member ID already exist")
    public static let peerURLExists = EtcdError(.failedPrecondition, "etcdserver: Peer URLs already exists")
    /// etcd 3.4 maps this one to a client-side error value, which gRPC sends as Unknown.
    public static let notEnoughStartedMembers = EtcdError(
        .unknown, "etcdserver: re-configuration failed due to not enough started members")
    public static let memberBadURLs = EtcdError(.invalidArgument, "etcdserver: given member URLs are invalid")
    public static let memberNotFound = EtcdError(.notFound, "etcdserver: member not found")
    public static let memberNotLearner = EtcdError(.failedPrecondition, "etcdserver: can only promote a learner member")
    public static let learnerNotReady = EtcdError(
        .failedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader")
    public static let tooManyLearners = EtcdError(.failedPrecondition, "etcdserver: too many learner members in cluster")

    /// A method swetcd does not implement yet: never a fake success.
    public static func unimplemented(_ method: String) -> EtcdError {
        EtcdError(.unimplemented, "swetcd: \(method) is not implemented yet")
    }
}

extension EtcdError {
    /// The client-visible form of an MVCC error (etcd's `togRPCError`).
    public init(_ error: MVCCError) {
        switch error {
        case .compacted: self = .compacted
        case .futureRevision: self = .futureRevision
        case .keyNotFound: self = .keyNotFound
        case .leaseNotFound: self = .leaseNotFound
        case .storage(let message): self = EtcdError(.internal, "swetcd: \(message)")
        }
    }
}

extension EtcdError {
    /// The client-visible form of a lessor error.
    public init(_ error: LeaseError) {
        switch error {
        case .notFound: self = .leaseNotFound
        case .exists: self = .leaseExists
        case .ttlTooLarge: self = .leaseTTLTooLarge
        }
    }
}
