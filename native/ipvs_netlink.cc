#include "ipvs_netlink.h"

#include <arpa/inet.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

#include "errors.h"

namespace {

// Large enough for any dump message the kernel builds (it sizes them to
// the reader's buffer, up to 32 KiB).
constexpr size_t kBufferSize = 32768;

// Room kept for each queued message: every request kube-lb builds is far smaller.
constexpr size_t kMaxQueuedMessage = 4096;
// Requests per sendmsg: their acknowledgements, queued on the socket while
// the kernel handles the sendmsg, must fit its default receive buffer, or
// some would be dropped.
constexpr size_t kBatchMessages = 64;
// Slots for the acknowledgements one recvmmsg reads: an error acknowledgement
// echoes its request (at most kMaxQueuedMessage) where the kernel cannot cap it.
constexpr size_t kAckSlot = kMaxQueuedMessage + 256;

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
  // Error acknowledgements without the request echoed: ours name their request by sequence number.
  int on = 1;
  setsockopt(mnl_socket_get_fd(socket_), SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof(on));
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

nlmsghdr* NetlinkSocket::BeginQueued(uint16_t type, uint16_t flags) {
  if (queue_.size() - queued_bytes_ < kMaxQueuedMessage) queue_.resize(std::max(2 * queue_.size(), queued_bytes_ + kMaxQueuedMessage));
  nlmsghdr* nlh = mnl_nlmsg_put_header(queue_.data() + queued_bytes_);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
  nlh->nlmsg_seq = ++seq_;
  return nlh;
}

void NetlinkSocket::Enqueue(const nlmsghdr* nlh) {
  queued_bytes_ += MNL_ALIGN(nlh->nlmsg_len);
  queued_count_++;
}

void NetlinkSocket::DiscardQueued() {
  queued_bytes_ = 0;
  queued_count_ = 0;
}

Napi::Array NetlinkSocket::SendQueued(Napi::Env env, const Describe& describe, const MakeError& make_error) {
  Napi::Array results = Napi::Array::New(env, queued_count_);
  size_t bytes = queued_bytes_;
  DiscardQueued();
  int fd = mnl_socket_get_fd(socket_);
  std::vector<char> acks(kBatchMessages * kAckSlot);
  std::vector<iovec> iov(kBatchMessages);
  std::vector<mmsghdr> msgs(kBatchMessages);
  size_t offset = 0;
  size_t sent = 0;  // messages
  while (offset < bytes) {
    // The next batch: up to kBatchMessages whole messages.
    const auto* first = reinterpret_cast<const nlmsghdr*>(queue_.data() + offset);
    size_t first_index = sent;
    size_t count = 0;
    size_t end = offset;
    while (end < bytes && count < kBatchMessages) {
      end += MNL_ALIGN(reinterpret_cast<const nlmsghdr*>(queue_.data() + end)->nlmsg_len);
      count++;
    }
    auto what = [&]() {
      auto [op, object] = describe(first_index);
      return "batch of " + std::to_string(count) + " netlink requests, from " + op + " " + object;
    };
    // errno first: describing the batch may change it.
    if (mnl_socket_sendto(socket_, first, end - offset) < 0) {
      int err = errno;
      ThrowErrno(env, err, "send", what());
    }
    std::vector<int> errors(count, -1);  // -1: not acknowledged yet
    size_t pending = count;
    while (pending > 0) {
      for (size_t i = 0; i < pending; i++) {
        iov[i] = {acks.data() + i * kAckSlot, kAckSlot};
        msgs[i] = {};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
      }
      // The kernel handled the whole sendmsg before it returned: every acknowledgement is queued already.
      int n = recvmmsg(fd, msgs.data(), pending, MSG_WAITFORONE, nullptr);
      if (n < 0) {
        int err = errno;
        ThrowErrno(env, err, "read the acknowledgements of", what());
      }
      for (int i = 0; i < n; i++) {
        const auto* nlh = reinterpret_cast<const nlmsghdr*>(acks.data() + i * kAckSlot);
        int len = static_cast<int>(std::min<size_t>(msgs[i].msg_len, kAckSlot));
        for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
          if (nlh->nlmsg_type != NLMSG_ERROR || nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(int)) continue;
          uint32_t k = nlh->nlmsg_seq - first->nlmsg_seq;
          if (k >= count || errors[k] != -1) continue;
          errors[k] = -static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh))->error;
          pending--;
        }
      }
    }
    for (size_t k = 0; k < count; k++) {
      size_t index = first_index + k;
      Napi::Value result = env.Null();
      if (errors[k] != 0) {
        auto [op, object] = describe(index);
        result = make_error ? make_error(errors[k], index, op, object).Value() : ErrnoError(env, errors[k], op, object).Value();
      }
      results.Set(static_cast<uint32_t>(index), result);
    }
    offset = end;
    sent += count;
  }
  return results;
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
