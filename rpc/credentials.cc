#include "rpc/credentials.h"

#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/base/status_macros.h"

namespace knncluster::rpc {

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read \"", path, "\""));
  }
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read \"", path, "\""));
  }
  return s.str();
}

absl::StatusOr<std::string> ReadPem(const std::string& path, absl::string_view flag) {
  KNN_ASSIGN_OR_RETURN(std::string pem, ReadFile(path, flag));
  if (!absl::StrContains(pem, "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": \"", path, "\" is not a PEM file"));
  }
  return pem;
}

// "HOST:PORT" → HOST without brackets; the whole address when there is no port.
absl::string_view HostOf(absl::string_view address) {
  if (absl::StartsWith(address, "[")) {
    const size_t close = address.find(']');
    if (close != absl::string_view::npos) return address.substr(1, close - 1);
  }
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return address;
  // A bare IPv6 address has more than one colon and no port we could split off safely.
  if (address.find(':') != colon) return address;
  return address.substr(0, colon);
}

bool IsPrintableToken(absl::string_view token) {
  for (char c : token) {
    if (c <= ' ' || c > '~') return false;
  }
  return !token.empty();
}

// The peer's verified common names (empty without a verified certificate).
std::vector<std::string> PeerCommonNames(const grpc::ServerContext& context) {
  std::vector<std::string> names;
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return names;
  for (const grpc::string_ref& v : auth->FindPropertyValues("x509_common_name")) {
    names.emplace_back(v.data(), v.size());
  }
  return names;
}

bool IsWorkerName(absl::string_view name) {
  return name == kWorkerName || absl::StartsWith(name, absl::StrCat(kWorkerName, "-"));
}

// What gRPC would only report as "cannot bind": a key that is not one, or not the certificate's.
absl::Status CheckKeyPair(const TlsMaterial& m, const SecurityOptions& options) {
  BIO* cert_bio = BIO_new_mem_buf(m.cert_pem.data(), static_cast<int>(m.cert_pem.size()));
  X509* cert = PEM_read_bio_X509(cert_bio, nullptr, nullptr, nullptr);
  BIO_free(cert_bio);
  BIO* key_bio = BIO_new_mem_buf(m.key_pem.data(), static_cast<int>(m.key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio, nullptr, nullptr, nullptr);
  BIO_free(key_bio);
  BIO* ca_bio = BIO_new_mem_buf(m.ca_pem.data(), static_cast<int>(m.ca_pem.size()));
  X509* ca = PEM_read_bio_X509(ca_bio, nullptr, nullptr, nullptr);
  BIO_free(ca_bio);
  absl::Status status;
  if (cert == nullptr) {
    status = absl::InvalidArgumentError(
        absl::StrCat("--tls-cert: \"", options.cert_file, "\" holds no PEM certificate"));
  } else if (key == nullptr) {
    status = absl::InvalidArgumentError(absl::StrCat(
        "--tls-key: \"", options.key_file, "\" holds no unencrypted PEM private key"));
  } else if (X509_check_private_key(cert, key) != 1) {
    status = absl::InvalidArgumentError(absl::StrCat("--tls-key: \"", options.key_file,
                                                     "\" is not the key of --tls-cert \"",
                                                     options.cert_file, "\""));
  } else if (ca == nullptr) {
    status = absl::InvalidArgumentError(
        absl::StrCat("--tls-ca: \"", options.ca_file, "\" holds no PEM certificate"));
  }
  X509_free(cert);
  EVP_PKEY_free(key);
  X509_free(ca);
  return status;
}

}  // namespace

bool IsLoopbackHost(absl::string_view host) {
  if (absl::StartsWith(host, "unix:") || absl::StartsWith(host, "unix-abstract:")) return true;
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
  }
  if (absl::EqualsIgnoreCase(host, "localhost") || host == "::1" || host == "0:0:0:0:0:0:0:1") {
    return true;
  }
  // 127.0.0.0/8, written as a dotted quad.
  std::vector<absl::string_view> parts = absl::StrSplit(host, '.');
  if (parts.size() != 4) return false;
  for (absl::string_view p : parts) {
    int octet = 0;
    if (p.empty() || p.size() > 3 || !absl::SimpleAtoi(p, &octet) || octet < 0 || octet > 255) {
      return false;
    }
  }
  return parts[0] == "127";
}

absl::Status CheckSecurityOptions(const SecurityOptions& options,
                                  absl::string_view listen_address) {
  const bool tls = options.tls();
  if (options.insecure && tls) {
    return absl::InvalidArgumentError(
        "--insecure: plaintext and --tls-cert/--tls-key/--tls-ca exclude each other; give one");
  }
  if (options.insecure) {
    const absl::string_view host =
        absl::StartsWith(listen_address, "unix") ? listen_address : HostOf(listen_address);
    if (!IsLoopbackHost(host) && !options.allow_insecure_remote) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--insecure: refusing plaintext on the non-loopback address \"", listen_address,
          "\" (anyone on the network could call it); serve TLS with --tls-cert, --tls-key and "
          "--tls-ca, listen on 127.0.0.1, or add --allow-insecure-remote"));
    }
    return absl::OkStatus();
  }
  if (!tls) {
    return absl::InvalidArgumentError(
        "no transport security chosen: pass --tls-cert, --tls-key and --tls-ca (make test "
        "certificates with scripts/make-certs.sh), or --insecure for plaintext on loopback");
  }
  std::vector<std::string> missing;
  if (options.cert_file.empty()) missing.push_back("--tls-cert");
  if (options.key_file.empty()) missing.push_back("--tls-key");
  if (options.ca_file.empty()) missing.push_back("--tls-ca");
  if (!missing.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS needs --tls-cert, --tls-key and --tls-ca together; missing ",
                     absl::StrJoin(missing, ", ")));
  }
  return absl::OkStatus();
}

absl::StatusOr<TlsMaterial> LoadTlsMaterial(const SecurityOptions& options) {
  TlsMaterial m;
  KNN_ASSIGN_OR_RETURN(m.cert_pem, ReadPem(options.cert_file, "--tls-cert"));
  KNN_ASSIGN_OR_RETURN(m.key_pem, ReadPem(options.key_file, "--tls-key"));
  KNN_ASSIGN_OR_RETURN(m.ca_pem, ReadPem(options.ca_file, "--tls-ca"));
  KNN_RETURN_IF_ERROR(CheckKeyPair(m, options));
  return m;
}

absl::StatusOr<std::string> LoadAuthToken(const std::string& file) {
  if (file.empty()) return std::string();
  KNN_ASSIGN_OR_RETURN(std::string content, ReadFile(file, "--auth-token-file"));
  const std::string token(absl::StripAsciiWhitespace(content));
  if (!IsPrintableToken(token)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--auth-token-file: \"", file,
        "\" must hold one token of printable ASCII without spaces (it is empty or has others)"));
  }
  return token;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const SecurityOptions& options, ClientCertificates client_certificates) {
  if (!options.tls()) return grpc::InsecureServerCredentials();
  KNN_ASSIGN_OR_RETURN(TlsMaterial m, LoadTlsMaterial(options));
  grpc::SslServerCredentialsOptions ssl(
      client_certificates == ClientCertificates::kRequire
          ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
          : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = m.ca_pem;
  ssl.pem_key_cert_pairs.push_back({m.key_pem, m.cert_pem});
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakePeerChannelCredentials(
    const SecurityOptions& options) {
  if (!options.tls()) return grpc::InsecureChannelCredentials();
  KNN_ASSIGN_OR_RETURN(TlsMaterial m, LoadTlsMaterial(options));
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = m.ca_pem;
  ssl.pem_cert_chain = m.cert_pem;
  ssl.pem_private_key = m.key_pem;
  return grpc::SslCredentials(ssl);
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  // Runs over a's length whatever b is; the lengths themselves are not secret-dependent here
  // beyond what a mismatch reveals.
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    const unsigned char other = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(a[i]) ^ other;
  }
  return diff == 0;
}

CallGuard::CallGuard(std::string token, Peer peer, bool tls)
    : token_(std::move(token)), peer_(peer), tls_(tls) {}

grpc::Status CallGuard::Check(const grpc::ServerContext* context) const {
  if (tls_ && peer_ != Peer::kAny) {
    const char* role = peer_ == Peer::kCoordinator ? "the coordinator" : "a worker";
    const std::string wanted = peer_ == Peer::kCoordinator
                                   ? absl::StrCat("CN ", kCoordinatorName)
                                   : absl::StrCat("CN ", kWorkerName, " or ", kWorkerName, "-*");
    const std::vector<std::string> names = PeerCommonNames(*context);
    if (names.empty()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          absl::StrCat("only ", role,
                                       " may call this service: present its "
                                       "certificate (",
                                       wanted, ", from the cluster's CA)"));
    }
    bool ok = false;
    for (const std::string& name : names) {
      ok = ok || (peer_ == Peer::kCoordinator ? name == kCoordinatorName : IsWorkerName(name));
    }
    if (!ok) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          absl::StrCat("only ", role,
                                       " may call this service: the peer's "
                                       "certificate has CN ",
                                       names.front(), ", not ", wanted));
    }
  }
  if (!token_.empty()) {
    const auto& metadata = context->client_metadata();
    auto it = metadata.find("authorization");
    if (it == metadata.end()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "missing bearer token: send metadata \"authorization: Bearer <token>\"");
    }
    const absl::string_view value(it->second.data(), it->second.size());
    constexpr absl::string_view kBearer = "Bearer ";
    if (!absl::StartsWith(value, kBearer) ||
        !ConstantTimeEquals(token_, value.substr(kBearer.size()))) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid bearer token");
    }
  }
  return grpc::Status::OK;
}

}  // namespace knncluster::rpc
