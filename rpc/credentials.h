// Transport security of the servers, written once: the options (certificate, key and CA files,
// plaintext switches, bearer-token file), the rule that checks them against the listen address,
// the gRPC server and channel credentials made from them, and the per-call check (bearer token,
// peer role by certificate) every server handler runs first.
//
// Roles are certificates' common names, issued by the cluster's CA (scripts/make-certs.sh):
//   kCoordinatorName ("knn-coordinator")  the coordinator; the only peer a worker serves
//   kWorkerName ("knn-worker", or "knn-worker-<anything>")  workers; the only peers the
//                                          coordinator's Membership service serves
// Clients need no certificate: the coordinator's port requests one and verifies it when given
// (so workers can prove their role there) but does not require it. A worker's port requires a
// certificate from the CA.
//
// Thread safety: SecurityOptions is a value; CallGuard is immutable after construction and its
// Check may run on any number of threads at once.
#ifndef KNNCLUSTER_RPC_CREDENTIALS_H_
#define KNNCLUSTER_RPC_CREDENTIALS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace grpc {
class ChannelCredentials;
class ServerContext;
class ServerCredentials;
class Status;
}  // namespace grpc

namespace knncluster::rpc {

inline constexpr char kCoordinatorName[] = "knn-coordinator";
inline constexpr char kWorkerName[] = "knn-worker";

// A server's transport security, as the --tls-* / --insecure / --auth-token-file flags give it.
// The default is plaintext on loopback, what in-process tests use; the binaries' --insecure flag
// defaults to false, so a knn-coordinator or knn-worker refuses plaintext unless asked for it.
struct SecurityOptions {
  // Plaintext (no TLS). Allowed only on a loopback listen address (127.0.0.0/8, ::1, localhost,
  // unix:) unless allow_insecure_remote. Mutually exclusive with the TLS files.
  bool insecure = true;
  bool allow_insecure_remote = false;
  // TLS: PEM files of this process's certificate (chain), its private key, and the CA that
  // signs every certificate of the cluster (peers are verified against it). All three, or none.
  std::string cert_file;
  std::string key_file;
  std::string ca_file;
  // Coordinator only: a file holding the bearer token every Coordinator call must carry
  // ("authorization: Bearer <token>"); surrounding whitespace is ignored. Empty: no token.
  std::string auth_token_file;

  bool tls() const { return !cert_file.empty() || !key_file.empty() || !ca_file.empty(); }
};

// True for 127.0.0.0/8, ::1 (bracketed or not), "localhost" and unix: addresses. `host` is
// the HOST part of HOST:PORT.
bool IsLoopbackHost(absl::string_view host);

// The rule, checked by the servers' Start and (for a flag-worded early exit) by their mains:
// InvalidArgument, naming the flags, when plaintext is asked for on a non-loopback address
// without allow_insecure_remote, when neither TLS nor plaintext is chosen, when TLS files come
// with --insecure, or when one of the three TLS files is missing.
absl::Status CheckSecurityOptions(const SecurityOptions& options, absl::string_view listen_address);

// The PEM contents of the TLS files, read once at start.
struct TlsMaterial {
  std::string cert_pem;
  std::string key_pem;
  std::string ca_pem;
};
// Reads the three files. InvalidArgument naming the flag of a file that is missing, unreadable or
// not PEM, of a key that is not the certificate's, or of a CA file without a certificate.
// REQUIRES: options.tls().
absl::StatusOr<TlsMaterial> LoadTlsMaterial(const SecurityOptions& options);

// Reads the bearer token file: InvalidArgument when unreadable, empty, or not printable ASCII
// without spaces (what gRPC can carry in metadata). Empty file name: returns "".
absl::StatusOr<std::string> LoadAuthToken(const std::string& file);

// What a server asks of the client's certificate during the handshake.
enum class ClientCertificates {
  kRequestAndVerify,  // the coordinator: clients may have none; workers show theirs
  kRequire,           // a worker: no call without a certificate from the CA
};

// Server credentials: insecure, or TLS with `material` (options.tls()). Errors of
// LoadTlsMaterial.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const SecurityOptions& options, ClientCertificates client_certificates);

// Credentials of this server's outgoing channels to its peers (coordinator → worker, worker →
// coordinator): insecure, or TLS trusting the CA and presenting this process's certificate.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakePeerChannelCredentials(
    const SecurityOptions& options);

// Who may call a service. Every handler of every server service starts with
//   if (grpc::Status s = guard_.Check(context); !s.ok()) return s;
// (tests/e2e/security_test.py calls every method of every service without credentials, so a
// method that forgets is caught).
class CallGuard {
 public:
  enum class Peer { kAny, kCoordinator, kWorker };
  // Lets every call through (plaintext, no token).
  CallGuard() = default;
  // `token`: required bearer token (empty: none). `peer`: the role the peer's verified
  // certificate must have when `tls` (without TLS there are no certificates to check).
  CallGuard(std::string token, Peer peer, bool tls);

  // OK, or UNAUTHENTICATED (no or wrong token; no verified certificate) or PERMISSION_DENIED (a
  // verified certificate of the wrong role), with a message saying what was expected.
  grpc::Status Check(const grpc::ServerContext* context) const;

 private:
  std::string token_;
  Peer peer_ = Peer::kAny;
  bool tls_ = false;
};

// Equal contents, in time that depends on the lengths only.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace knncluster::rpc

#endif  // KNNCLUSTER_RPC_CREDENTIALS_H_
