#include "ipvs_netlink.h"

#include <arpa/inet.h>
#include <linux/netlink.h>

#include <cerrno>
#include <ctime>

#include "errors.h"

namespace {

// Large enough for any dump message the kernel builds (it sizes them to
// the reader's buffer, up to 32 KiB).
constexpr size_t kBufferSize = 32768;

int MessageCallback(const nlmsghdr* nlh, void* data) {
  (*static_cast<const NetlinkSocket::OnMessage*>(data))(nlh);
  return MNL_CB_OK;
}

int CollectAttribute(const nlattr* attr, void* data) {
  auto* table = static_cast<std::vector<const nlattr*>*>(data);
  uint16_t type = mnl_attr_get_type(attr);
  if (type < table->size()) (*table)[type] = attr;
  return MNL_CB_OK;
}

}  // namespace

NetlinkSocket::NetlinkSocket(Napi::Env env, int protocol)
    : socket_(mnl_socket_open(protocol)), seq_(static_cast<uint32_t>(time(nullptr))), buffer_(kBufferSize) {
  if (socket_ == nullptr) ThrowErrno(env, errno, "open", "netlink socket");
  if (mnl_socket_bind(socket_, 0, MNL_SOCKET_AUTOPID) < 0) {
    int err = errno;
    mnl_socket_close(socket_);
    ThrowErrno(env, err, "bind", "netlink socket");
  }
  port_id_ = mnl_socket_get_portid(socket_);
}

NetlinkSocket::~NetlinkSocket() { mnl_socket_close(socket_); }

nlmsghdr* NetlinkSocket::Begin(uint16_t type, uint16_t flags) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buffer_.data());
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = NLM_F_REQUEST | flags;
  nlh->nlmsg_seq = ++seq_;
  return nlh;
}

void NetlinkSocket::Request(Napi::Env env, nlmsghdr* nlh, const std::string& op, const std::string& object,
                            const OnMessage& on_message) {
  nlh->nlmsg_flags |= NLM_F_ACK;
  Exchange(env, nlh, op, object, on_message);
}

void NetlinkSocket::Dump(Napi::Env env, nlmsghdr* nlh, const std::string& op, const std::string& object,
                         const OnMessage& on_message) {
  nlh->nlmsg_flags |= NLM_F_DUMP;
  Exchange(env, nlh, op, object, on_message);
}

void NetlinkSocket::Exchange(Napi::Env env, nlmsghdr* nlh, const std::string& op, const std::string& object,
                             const OnMessage& on_message) {
  uint32_t seq = nlh->nlmsg_seq;
  if (mnl_socket_sendto(socket_, nlh, nlh->nlmsg_len) < 0) ThrowErrno(env, errno, op, object);
  // Replies reuse the buffer: the request is no longer needed once sent.
  mnl_cb_t cb = on_message ? MessageCallback : nullptr;
  void* data = const_cast<OnMessage*>(&on_message);
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(socket_, buffer_.data(), buffer_.size());
    if (n < 0) ThrowErrno(env, errno, op, object);
    int ret = mnl_cb_run(buffer_.data(), n, seq, port_id_, cb, data);
    if (ret == MNL_CB_ERROR) ThrowErrno(env, errno, op, object);
    if (ret == MNL_CB_STOP) return;
  }
}

std::vector<const nlattr*> ParseNested(const nlattr* nest, uint16_t max) {
  std::vector<const nlattr*> table(max + 1, nullptr);
  mnl_attr_parse_nested(nest, CollectAttribute, &table);
  return table;
}

std::vector<const nlattr*> ParseMessage(const nlmsghdr* nlh, size_t offset, uint16_t max) {
  std::vector<const nlattr*> table(max + 1, nullptr);
  mnl_attr_parse(nlh, offset, CollectAttribute, &table);
  return table;
}

Address ParseAddress(Napi::Env env, const char* fn, const std::string& family, const std::string& text) {
  Address address{};
  if (family == "IPv4") address.af = AF_INET;
  else if (family == "IPv6") address.af = AF_INET6;
  else throw Napi::TypeError::New(env, std::string(fn) + ": family " + family + " is neither IPv4 nor IPv6");
  if (inet_pton(address.af, text.c_str(), address.bytes) != 1) {
    throw Napi::TypeError::New(env, std::string(fn) + ": " + text + " is not an " + family + " address");
  }
  return address;
}

std::string FormatAddress(int af, const void* network_order) {
  char text[INET6_ADDRSTRLEN];
  inet_ntop(af, network_order, text, sizeof(text));
  return text;
}

const char* FamilyName(int af) { return af == AF_INET6 ? "IPv6" : "IPv4"; }
