#include "ipvs_netlink.h"

#include <arpa/inet.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <optional>

#include "args.h"
#include "errors.h"

namespace {

// Large enough for any dump message the kernel builds (it sizes them to
// the reader's buffer, up to 32 KiB).
constexpr size_t kBufferSize = 32768;

// Requests per sendmsg: the answers of those the kernel refuses, queued on
// the socket while it handles the sendmsg, must fit its default receive
// buffer, or some would be dropped.
constexpr size_t kBatchMessages = 64;
// Bytes per sendmsg: within the socket's default send buffer.
constexpr size_t kBatchBytes = 65536;
// Slots for the answers one recvmmsg reads: an error acknowledgement
// echoes its request (at most NetlinkSocket::kMaxQueuedMessage) where the kernel cannot cap it.
constexpr size_t kAckSlot = NetlinkSocket::kMaxQueuedMessage + 256;

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
  // No NLM_F_ACK: the kernel answers a refused request all the same, and
  // an answer to each one it takes is work for it and for Transmit.
  nlh->nlmsg_flags = NLM_F_REQUEST | flags;
  nlh->nlmsg_seq = ++seq_;
  last_offset_ = queued_bytes_;
  return nlh;
}

void NetlinkSocket::Enqueue(const nlmsghdr* nlh) {
  queued_bytes_ += MNL_ALIGN(nlh->nlmsg_len);
  queued_count_++;
}

const nlmsghdr* NetlinkSocket::LastQueued() const {
  return queued_count_ == 0 ? nullptr : reinterpret_cast<const nlmsghdr*>(queue_.data() + last_offset_);
}

nlmsghdr* NetlinkSocket::ReopenLast() {
  if (queued_count_ == 0) return nullptr;
  queued_bytes_ = last_offset_;
  queued_count_--;
  return reinterpret_cast<nlmsghdr*>(queue_.data() + last_offset_);
}

void NetlinkSocket::DiscardQueued() {
  queued_bytes_ = 0;
  queued_count_ = 0;
}

std::vector<int> NetlinkSocket::Transmit() {
  std::vector<int> results(queued_count_, 0);
  size_t bytes = queued_bytes_;
  DiscardQueued();
  int fd = mnl_socket_get_fd(socket_);
  std::vector<char> answers(kBatchMessages * kAckSlot);
  std::vector<iovec> iov(kBatchMessages);
  std::vector<mmsghdr> msgs(kBatchMessages);
  size_t offset = 0;
  size_t sent = 0;  // messages
  while (offset < bytes) {
    // The next batch: up to kBatchMessages whole messages in kBatchBytes (at least one).
    const auto* first = reinterpret_cast<const nlmsghdr*>(queue_.data() + offset);
    size_t count = 0;
    size_t end = offset;
    while (end < bytes && count < kBatchMessages) {
      size_t next = end + MNL_ALIGN(reinterpret_cast<const nlmsghdr*>(queue_.data() + end)->nlmsg_len);
      if (count > 0 && next - offset > kBatchBytes) break;
      end = next;
      count++;
    }
    if (mnl_socket_sendto(socket_, first, end - offset) < 0) throw ExchangeFailure{errno, "send", sent, count};
    // The kernel handled the whole sendmsg before it returned: the answers
    // of the requests it refused are queued already, and a request with
    // none was taken.
    int* errors = results.data() + sent;
    for (;;) {
      for (size_t i = 0; i < kBatchMessages; i++) {
        iov[i] = {answers.data() + i * kAckSlot, kAckSlot};
        msgs[i] = {};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
      }
      int n = recvmmsg(fd, msgs.data(), kBatchMessages, MSG_DONTWAIT, nullptr);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0) throw ExchangeFailure{errno, "read the answers to", sent, count};
      for (int i = 0; i < n; i++) {
        const auto* nlh = reinterpret_cast<const nlmsghdr*>(answers.data() + i * kAckSlot);
        int len = static_cast<int>(std::min<size_t>(msgs[i].msg_len, kAckSlot));
        for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
          if (nlh->nlmsg_type != NLMSG_ERROR || nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(int)) continue;
          uint32_t k = nlh->nlmsg_seq - first->nlmsg_seq;
          if (k < count) errors[k] = -static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh))->error;
        }
      }
      if (static_cast<size_t>(n) < kBatchMessages) break;
    }
    offset = end;
    sent += count;
  }
  return results;
}

namespace {

// The error of an exchange that failed part way, naming its batch by the first request in it.
Napi::Error ExchangeError(Napi::Env env, const NetlinkSocket::ExchangeFailure& failure, const NetlinkSocket::Describe& describe) {
  auto [op, object] = describe(failure.first_index);
  return ErrnoError(env, failure.err, failure.action,
                    "batch of " + std::to_string(failure.count) + " netlink requests, from " + op + " " + object);
}

// Transmit's error numbers as JS values: null, or each refused request's JS error.
Napi::Array Results(Napi::Env env, const std::vector<int>& errors, const NetlinkSocket::Describe& describe,
                    const NetlinkSocket::MakeError& make_error) {
  Napi::Array results = Napi::Array::New(env, errors.size());
  for (size_t index = 0; index < errors.size(); index++) {
    Napi::Value result = env.Null();
    if (errors[index] != 0) {
      auto [op, object] = describe(index);
      result = make_error ? make_error(errors[index], index, op, object).Value() : ErrnoError(env, errors[index], op, object).Value();
    }
    results.Set(static_cast<uint32_t>(index), result);
  }
  return results;
}

// ApplyLines' work: the lines are queued and exchanged on a worker thread,
// the results (JS values) made back on the event loop's.
class LineBatchWorker : public Napi::AsyncWorker {
 public:
  LineBatchWorker(Napi::Promise::Deferred deferred, std::string text, size_t count, std::unique_ptr<NetlinkSocket> socket,
                  LineBatch batch)
      : Napi::AsyncWorker(deferred.Env(), batch.fn),
        deferred_(deferred),
        text_(std::move(text)),
        count_(count),
        socket_(std::move(socket)),
        batch_(std::move(batch)) {}

  // What escapes here would end the process: every failure becomes the promise's.
  void Execute() override {
    // Each message's lines: from its first to the next message's first.
    std::vector<size_t> first_lines;
    try {
      SplitLines();
      for (size_t i = 0; i < lines_.size(); i++) {
        if (batch_.join && batch_.join(*socket_, lines_[i], i)) continue;
        first_lines.push_back(i);
        batch_.queue(*socket_, lines_[i], i);
      }
    } catch (const ArgumentError& err) {
      malformed_ = err.what();
      return;  // nothing sent
    } catch (const std::exception& err) {
      SetError(std::string(batch_.fn) + ": " + err.what());
      return;
    }
    first_lines.push_back(lines_.size());
    try {
      errors_ = LineErrors(first_lines, Exchange(first_lines));
      // The lines of refused messages that carried several, one per message, for each one's answer.
      std::vector<size_t> again;
      for (size_t m = 0; m + 1 < first_lines.size(); m++) {
        if (first_lines[m + 1] - first_lines[m] < 2 || errors_[first_lines[m]] == 0) continue;
        for (size_t i = first_lines[m]; i < first_lines[m + 1]; i++) {
          again.push_back(i);
          batch_.queue(*socket_, lines_[i], i);
        }
      }
      std::vector<int> resent = Exchange(again);
      for (size_t k = 0; k < again.size(); k++) errors_[again[k]] = resent[k];
    } catch (const NetlinkSocket::ExchangeFailure& failure) {
      failure_ = failure;
    } catch (const std::exception& err) {
      SetError(std::string(batch_.fn) + ": " + err.what());
    }
  }

  // Transmit, its failure naming the line that began the batch it failed on (`lines` by message).
  std::vector<int> Exchange(const std::vector<size_t>& lines) {
    try {
      return socket_->Transmit();
    } catch (NetlinkSocket::ExchangeFailure& failure) {
      failure.first_index = lines[failure.first_index];
      throw;
    }
  }

  // Each line's error number: that of the message it went in.
  std::vector<int> LineErrors(const std::vector<size_t>& first_lines, const std::vector<int>& message_errors) {
    std::vector<int> errors(lines_.size());
    for (size_t m = 0; m < message_errors.size(); m++) std::fill(errors.begin() + first_lines[m], errors.begin() + first_lines[m + 1], message_errors[m]);
    return errors;
  }

  void OnError(const Napi::Error& err) override { deferred_.Reject(err.Value()); }

  // A line break inside a field would make more lines than changes: refused, as a space in a field is by Fields.
  void SplitLines() {
    if (!text_.empty()) {
      for (size_t start = 0;;) {
        size_t end = text_.find('\n', start);
        lines_.push_back(text_.substr(start, end - start));
        if (end == std::string::npos) break;
        start = end + 1;
      }
    }
    if (lines_.size() != count_) {
      throw ArgumentError(std::string(batch_.fn) + ": changes must be " + std::to_string(count_) + " lines, not " + std::to_string(lines_.size()) +
                          " (a field holds a line break)");
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    NetlinkSocket::Describe describe = [this](size_t i) { return batch_.describe(lines_[i]); };
    NetlinkSocket::MakeError make_error;
    if (batch_.make_error) {
      make_error = [this](int err, size_t i, const std::string& op, const std::string& object) {
        return batch_.make_error(err, lines_[i], op, object);
      };
    }
    if (!malformed_.empty()) deferred_.Reject(Napi::TypeError::New(env, malformed_).Value());
    else if (failure_) deferred_.Reject(ExchangeError(env, *failure_, describe).Value());
    else deferred_.Resolve(Results(env, errors_, describe, make_error));
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string text_;
  size_t count_;
  std::vector<std::string> lines_;
  std::unique_ptr<NetlinkSocket> socket_;
  LineBatch batch_;
  std::string malformed_;
  std::optional<NetlinkSocket::ExchangeFailure> failure_;
  std::vector<int> errors_;
};

}  // namespace

Napi::Promise ApplyLines(Napi::Env env, Napi::Value text, Napi::Value count, std::unique_ptr<NetlinkSocket> socket, LineBatch batch) {
  auto deferred = Napi::Promise::Deferred::New(env);
  if (!text.IsString() || !count.IsNumber()) {
    deferred.Reject(Napi::TypeError::New(env, std::string(batch.fn) + ": changes must be lines of text and their count").Value());
    return deferred.Promise();
  }
  size_t lines = static_cast<size_t>(count.As<Napi::Number>().Int64Value());
  (new LineBatchWorker(deferred, text.As<Napi::String>().Utf8Value(), lines, std::move(socket), std::move(batch)))->Queue();
  return deferred.Promise();
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

Address ParseAddress(const char* fn, const std::string& family, const std::string& text) {
  Address address{};
  if (family == "IPv4") address.af = AF_INET;
  else if (family == "IPv6") address.af = AF_INET6;
  else throw ArgumentError(std::string(fn) + ": family " + family + " is neither IPv4 nor IPv6");
  if (inet_pton(address.af, text.c_str(), address.bytes) != 1) {
    throw ArgumentError(std::string(fn) + ": " + text + " is not an " + family + " address");
  }
  return address;
}

std::string FormatAddress(int af, const void* network_order) {
  char text[INET6_ADDRSTRLEN];
  inet_ntop(af, network_order, text, sizeof(text));
  return text;
}

const char* FamilyName(int af) { return af == AF_INET6 ? "IPv6" : "IPv4"; }
