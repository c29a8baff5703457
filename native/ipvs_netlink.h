// A netlink socket over libmnl for the IPVS backend (IPVS, its links, its ipsets): one request, one
// acknowledgement (or a dump), errors thrown as JS errors naming the
// operation and the object; or a queue of requests sent many per sendmsg
// on a worker thread (ApplyLines), the kernel answering only those it
// refuses. Sockets live in the network namespace of the thread that
// opened them.
#pragma once

#include <libmnl/libmnl.h>
#include <sys/socket.h>
#include <napi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

class NetlinkSocket {
 public:
  // Opens a socket of `protocol` (NETLINK_ROUTE, NETLINK_GENERIC, NETLINK_NETFILTER); throws on failure.
  NetlinkSocket(Napi::Env env, int protocol);
  ~NetlinkSocket();
  NetlinkSocket(const NetlinkSocket&) = delete;
  NetlinkSocket& operator=(const NetlinkSocket&) = delete;

  // Starts a message in the socket's buffer with a fresh sequence number.
  nlmsghdr* Begin(uint16_t type, uint16_t flags);
  using OnMessage = std::function<void(const nlmsghdr*)>;
  // Sends the message begun last and waits for its acknowledgement;
  // `on_message`, if given, sees each reply before it.
  void Request(Napi::Env env, nlmsghdr* nlh, const std::string& op, const std::string& object,
               const OnMessage& on_message = nullptr);
  // Sends a dump request; `on_message` sees each reply message.
  void Dump(Napi::Env env, nlmsghdr* nlh, const std::string& op, const std::string& object,
            const OnMessage& on_message);

  // Starts a message after those queued, answered only if refused; the
  // pointer is valid until the next BeginQueued.
  nlmsghdr* BeginQueued(uint16_t type, uint16_t flags);
  // Ends the message begun last.
  void Enqueue(const nlmsghdr* nlh);
  // Room BeginQueued keeps for each message: every request kube-lb builds is far smaller.
  static constexpr size_t kMaxQueuedMessage = 4096;
  // Takes the message queued last back out of the queue, to add attributes
  // to it (up to kMaxQueuedMessage in all) and enqueue it again; null when
  // the queue is empty.
  nlmsghdr* ReopenLast();
  // The message queued last, to see whether a line may join it; null when the queue is empty.
  const nlmsghdr* LastQueued() const;
  // The operation and object of the queued message at `index`, for its
  // error: asked only of those that fail, so a large batch formats no text.
  using Describe = std::function<std::pair<std::string, std::string>(size_t index)>;
  // The JS error of a refused message: its error number (positive), its
  // place in the queue, and its operation and object as Describe says them.
  using MakeError = std::function<Napi::Error(int err, size_t index, const std::string& op, const std::string& object)>;
  // Where an exchange of queued messages failed: the error number, what
  // was being done, and the batch it was done to (its first message's index,
  // or the caller's index of that message, and how many it holds).
  struct ExchangeFailure {
    int err;
    const char* action;
    size_t first_index;
    size_t count;
  };
  // Sends the queued messages in order, many per sendmsg, and reads the
  // answers to those refused, touching no JS: each one's error number (0
  // if the kernel took it), in order. Throws ExchangeFailure (the queue emptied)
  // where the exchange itself fails: then some may have been applied.
  std::vector<int> Transmit();

 private:
  // Drops whatever was queued and not sent.
  void DiscardQueued();
  void Exchange(Napi::Env env, nlmsghdr* nlh, const std::string& op, const std::string& object,
                const OnMessage& on_message);

  mnl_socket* socket_;
  uint32_t port_id_;
  uint32_t seq_;
  std::vector<char> buffer_;
  // Queued messages back to back, and how many.
  std::vector<char> queue_;
  size_t queued_bytes_ = 0;
  size_t queued_count_ = 0;
  size_t last_offset_ = 0;  // of the message begun last
};

// A batch of changes, each a line of fields (Fields), applied off the event
// loop by ApplyLines.
struct LineBatch {
  const char* fn;  // the exported function, for messages
  // Queues the message of line `index` on the batch's socket; runs on the
  // worker thread, so it touches no JS. Throws ArgumentError for a
  // malformed line.
  std::function<void(NetlinkSocket& socket, const std::string& line, size_t index)> queue;
  // A queued line's operation and object, for its error.
  std::function<std::pair<std::string, std::string>(const std::string& line)> describe;
  // A refused line's JS error, for protocols with error numbers of their
  // own (optional: without it, the error a lone request would throw).
  std::function<Napi::Error(int err, const std::string& line, const std::string& op, const std::string& object)> make_error;
  // Adds line `index` to the message queued last, where the protocol lets
  // one message carry several lines; returns false where it cannot
  // (optional: without it, each line is a message). A refused message's
  // lines are sent again one per message, after the rest, for each line's
  // own answer: the lines of a batch must then be safe to repeat, and not
  // depend on their order.
  std::function<bool(NetlinkSocket& socket, const std::string& line, size_t index)> join;
};

// Reads `text`, `count` lines separated by '\n' (one string crosses N-API
// rather than one per line), and, on a worker thread, splits it, queues
// each line on `socket`, the batch's own, and sends them (Transmit). The
// promise resolves to each line's null or error; it rejects with
// a TypeError, nothing sent, where the text does not hold `count` lines or
// a line is malformed, or with the error of an exchange that failed part
// way.
Napi::Promise ApplyLines(Napi::Env env, Napi::Value text, Napi::Value count, std::unique_ptr<NetlinkSocket> socket, LineBatch batch);

// The attributes of a nested attribute, or of a message after its
// `offset`-byte family header, by type up to max (null where absent; the
// last of repeated ones).
std::vector<const nlattr*> ParseNested(const nlattr* nest, uint16_t max);
std::vector<const nlattr*> ParseMessage(const nlmsghdr* nlh, size_t offset, uint16_t max);

// An IPv4 or IPv6 address in network order: `size` of its bytes are used.
struct Address {
  int af;  // AF_INET or AF_INET6
  unsigned char bytes[16];
  size_t size() const { return af == AF_INET6 ? 16 : 4; }
};

// Text of the family ("IPv4" or "IPv6", as kube-lb's model names them) to
// network-order bytes; throws an ArgumentError naming fn and the value. The
// family comes from the caller, never from the text.
Address ParseAddress(const char* fn, const std::string& family, const std::string& text);
std::string FormatAddress(int af, const void* network_order);
// "IPv4" or "IPv6", as the model names the family of AF_INET, AF_INET6.
const char* FamilyName(int af);
