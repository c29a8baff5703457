// ipset elements added and deleted over nfnetlink (NFNL_SUBSYS_IPSET),
// consecutive changes of one kind to one set in one message, as `ipset
// restore` sends them, many messages per sendmsg, and listed with one
// dump. Without NLM_F_EXCL the kernel takes adding an element already
// there, or deleting one that is not, as done (`ipset -exist`). Sets are
// created, swapped and destroyed by the ipset command, not here.
// glibc's header first: the kernel's then leave out what it defines.
#include <netinet/in.h>

#include <linux/netfilter.h>
#include <linux/netfilter/ipset/ip_set.h>
#include <linux/netfilter/ipset/ip_set_bitmap.h>
#include <linux/netfilter/ipset/ip_set_hash.h>
#include <linux/netfilter/nfnetlink.h>

#include <cerrno>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"
#include "exports.h"
#include "ipvs_netlink.h"

namespace {

// What ipset 7 sends on the kernels kube-lb supports; they take adds and
// deletes of any version from IPSET_PROTOCOL_MIN (6) up.
constexpr uint8_t kProtocol = 7;

// The parts of an element of each set type kube-lb uses, in the order the
// change carries them (after the family, where there are addresses).
struct SetType {
  const char* name;
  bool ip;
  bool protocol;  // with the port: "tcp:80"
  bool port;
  bool ip2;
  bool cidr2;
  bool bitmap;  // its own meanings of the type-specific error numbers
};

constexpr SetType kTypes[] = {
    {"hash:ip", true, false, false, false, false, false},
    {"hash:ip,port", true, true, true, false, false, false},
    {"hash:ip,port,ip", true, true, true, true, false, false},
    {"hash:ip,port,net", true, true, true, true, true, false},
    {"bitmap:port", false, false, true, false, false, true},
};

struct Element {
  Address ip;
  uint8_t protocol;
  uint16_t port;
  Address ip2;
  uint8_t cidr2;
};

// Why the kernel refused an add or delete, in ipset's numbers.
struct Reason {
  int err;
  const char* code;
  const char* text;
};

// What any set type may answer; ENOENT here means no set has the name.
constexpr Reason kCoreReasons[] = {
    {ENOENT, "ENOENT", "no such set"},
    {IPSET_ERR_PROTOCOL, "IPSET_ERR_PROTOCOL",
     "the kernel's ipset refused the message (an attribute missing, malformed, or an address of the other family)"},
    {IPSET_ERR_EXIST, "IPSET_ERR_EXIST", "the element is already in the set (add) or not in it (delete)"},
    {IPSET_ERR_INVALID_CIDR, "IPSET_ERR_INVALID_CIDR", "the prefix length is out of range"},
};

// The type-specific numbers, which mean one thing for hash types and another for bitmap ones.
constexpr Reason kHashReasons[] = {
    {IPSET_ERR_HASH_FULL, "IPSET_ERR_HASH_FULL", "the set is full (its maxelem)"},
    {IPSET_ERR_HASH_ELEM, "IPSET_ERR_HASH_ELEM", "a hash set cannot hold an all-zero element"},
    {IPSET_ERR_INVALID_PROTO, "IPSET_ERR_INVALID_PROTO", "the protocol is invalid"},
    {IPSET_ERR_MISSING_PROTO, "IPSET_ERR_MISSING_PROTO", "a port needs a protocol"},
};

constexpr Reason kBitmapReasons[] = {
    {IPSET_ERR_BITMAP_RANGE, "IPSET_ERR_BITMAP_RANGE", "the element is outside the set's range"},
};

template <size_t N>
const Reason* FindReason(const Reason (&reasons)[N], int err) {
  for (const Reason& reason : reasons) {
    if (reason.err == err) return &reason;
  }
  return nullptr;
}

Napi::Error IpsetError(Napi::Env env, int err, const SetType& type, const std::string& op, const std::string& object) {
  const Reason* reason = FindReason(kCoreReasons, err);
  if (!reason) reason = type.bitmap ? FindReason(kBitmapReasons, err) : FindReason(kHashReasons, err);
  if (!reason) return ErrnoError(env, err, op, object);
  return CodedError(env, err, reason->code, reason->text, op, object);
}

std::string ProtocolName(uint8_t protocol) {
  switch (protocol) {
    case IPPROTO_TCP: return "tcp";
    case IPPROTO_UDP: return "udp";
    case IPPROTO_SCTP: return "sctp";
  }
  return std::to_string(protocol);
}

const SetType* FindType(const std::string& name) {
  for (const SetType& type : kTypes) {
    if (name == type.name) return &type;
  }
  return nullptr;
}

const SetType& TypeArg(const Fields& args) {
  if (const SetType* type = FindType(args.String(1, "type"))) return *type;
  args.Fail("type", "one of hash:ip, hash:ip,port, hash:ip,port,ip, hash:ip,port,net, bitmap:port");
}

// The element's parts after the set and its type: [family, ip, protocol,
// port, ip2, cidr2] as far as the type has them; family is "IPv4" or "IPv6",
// the set's.
Element ElementArgs(const Fields& args, const SetType& type) {
  const char* fn = "ipsetApply";
  Element e{};
  size_t i = 2;
  std::string family;
  if (type.ip) {
    family = args.String(i++, "family");
    e.ip = ParseAddress(fn, family, args.String(i++, "ip"));
  }
  if (type.protocol) e.protocol = static_cast<uint8_t>(args.Uint32(i++, "protocol", 1, 255));
  if (type.port) e.port = static_cast<uint16_t>(args.Uint32(i++, "port", 0, 65535));
  if (type.ip2) {
    e.ip2 = ParseAddress(fn, family, args.String(i++, "ip2"));
    if (type.cidr2) e.cidr2 = static_cast<uint8_t>(args.Uint32(i++, "cidr2", 0, 128));
  }
  return e;
}

// The element as ipset prints it ("10.96.0.10,tcp:80"), from the same
// arguments ElementArgs took, for messages.
std::string ElementText(const Fields& args, const SetType& type) {
  size_t i = type.ip ? 3 : 2;  // past the family, which bitmap:port has not
  std::string text;
  if (type.ip) text = args.String(i++, "ip") + ",";
  if (type.protocol) text += ProtocolName(static_cast<uint8_t>(args.Uint32(i++, "protocol"))) + ":";
  if (type.port) text += std::to_string(args.Uint32(i++, "port")) + ",";
  if (type.ip2) {
    text += args.String(i++, "ip2");
    if (type.cidr2) text += "/" + std::to_string(args.Uint32(i++, "cidr2"));
    text += ",";
  }
  text.pop_back();  // the last separator
  return text;
}

// An address nested in attribute `type` (IPSET_ATTR_IP, IPSET_ATTR_IP2).
void PutAddress(nlmsghdr* nlh, uint16_t type, const Address& address) {
  nlattr* nest = mnl_attr_nest_start(nlh, type);
  uint16_t attr = address.af == AF_INET6 ? IPSET_ATTR_IPADDR_IPV6 : IPSET_ATTR_IPADDR_IPV4;
  mnl_attr_put(nlh, attr | NLA_F_NET_BYTEORDER, address.size(), address.bytes);
  mnl_attr_nest_end(nlh, nest);
}

// The headers every ipset request starts with, after the netlink header.
void PutIpsetHeader(nlmsghdr* nlh) {
  auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  // The kernel takes the family from the set; ipset sends IPv4's for every set.
  nfg->nfgen_family = NFPROTO_IPV4;
  nfg->version = NFNETLINK_V0;
  nfg->res_id = 0;
  mnl_attr_put_u8(nlh, IPSET_ATTR_PROTOCOL, kProtocol);
}

void PutElement(nlmsghdr* nlh, const SetType& type, const Element& e) {
  nlattr* data = mnl_attr_nest_start(nlh, IPSET_ATTR_DATA);
  if (type.ip) PutAddress(nlh, IPSET_ATTR_IP, e.ip);
  if (type.port) mnl_attr_put_u16(nlh, IPSET_ATTR_PORT | NLA_F_NET_BYTEORDER, htons(e.port));
  if (type.protocol) mnl_attr_put_u8(nlh, IPSET_ATTR_PROTO, e.protocol);
  if (type.ip2) PutAddress(nlh, IPSET_ATTR_IP2, e.ip2);
  if (type.cidr2) mnl_attr_put_u8(nlh, IPSET_ATTR_CIDR2, e.cidr2);
  mnl_attr_nest_end(nlh, data);
}

// A message of elements (IPSET_ATTR_ADT, its last attribute, where Join
// adds more) with the IPSET_ATTR_LINENO the kernel asks of one; the
// elements carry no line number of their own, so a refused one is
// answered with its plain error. The kernel stops at the first it refuses.
void Queue(NetlinkSocket& socket, uint8_t cmd, const std::string& set, const SetType& type, const Element& e) {
  nlmsghdr* nlh = socket.BeginQueued((NFNL_SUBSYS_IPSET << 8) | cmd, 0);
  PutIpsetHeader(nlh);
  mnl_attr_put_strz(nlh, IPSET_ATTR_SETNAME, set.c_str());
  mnl_attr_put_u32(nlh, IPSET_ATTR_LINENO, 0);
  nlattr* adt = mnl_attr_nest_start(nlh, IPSET_ATTR_ADT);
  PutElement(nlh, type, e);
  mnl_attr_nest_end(nlh, adt);
  socket.Enqueue(nlh);
}

// A joined message stays well within the room BeginQueued keeps for it, the largest element included.
constexpr size_t kJoinedBytes = NetlinkSocket::kMaxQueuedMessage / 2;

// Adds the element to the message queued last where that message makes the same change to the same set.
bool Join(NetlinkSocket& socket, uint8_t cmd, const std::string& set, const SetType& type, const Element& e) {
  const nlmsghdr* last = socket.LastQueued();
  if (last == nullptr || last->nlmsg_type != ((NFNL_SUBSYS_IPSET << 8) | cmd) || last->nlmsg_len > kJoinedBytes) return false;
  auto attrs = ParseMessage(last, sizeof(nfgenmsg), IPSET_ATTR_CMD_MAX);
  if (!attrs[IPSET_ATTR_SETNAME] || set != mnl_attr_get_str(attrs[IPSET_ATTR_SETNAME]) || !attrs[IPSET_ATTR_ADT]) return false;
  nlmsghdr* nlh = socket.ReopenLast();  // `last`, to write to
  auto* adt = const_cast<nlattr*>(attrs[IPSET_ATTR_ADT]);
  PutElement(nlh, type, e);
  mnl_attr_nest_end(nlh, adt);
  socket.Enqueue(nlh);
  return true;
}

// How many fields a change to a set of `type` has, after its op: set, type, and its element's parts.
size_t FieldCount(const SetType& type) {
  return 2 + (type.ip ? 2 : 0) + type.protocol + type.port + type.ip2 + type.cidr2;
}

// The op ("add" or "del") a line starts with; `index` is the line's, for the error.
uint8_t CommandOf(const std::string& line, size_t index) {
  std::string op = line.substr(0, line.find(' '));
  if (op == "add") return IPSET_CMD_ADD;
  if (op == "del") return IPSET_CMD_DEL;
  throw ArgumentError("ipsetApply: change " + std::to_string(index) + " must be a line \"op set type ...element\" with op add or del");
}

// A change's parts, checked.
struct Change {
  uint8_t cmd;
  std::string set;
  const SetType* type;
  Element element;
};

Change ChangeArgs(const std::string& line, size_t index) {
  uint8_t cmd = CommandOf(line, index);
  Fields args(line, 1, "ipsetApply");
  std::string set = args.String(0, "set");
  if (set.size() >= IPSET_MAXNAMELEN) args.Fail("set", "a name of 1 to " + std::to_string(IPSET_MAXNAMELEN - 1) + " characters");
  const SetType& type = TypeArg(args);
  Element element = ElementArgs(args, type);
  args.RequireCount(FieldCount(type));
  return {cmd, set, &type, element};
}

// ipsetApply(changes): each change a line "op set type ...element" (Fields),
// op add or del, element as ElementArgs reads it, off the event loop
// (ApplyLines); resolves to each change's null or error. The kernel goes
// on past a refused change. A change may be repeated, and changes may be
// applied out of order (LineBatch.join): one element must not have two.
Napi::Value Apply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LineBatch batch{
      "ipsetApply",
      [](NetlinkSocket& socket, const std::string& line, size_t index) {
        Change c = ChangeArgs(line, index);
        Queue(socket, c.cmd, c.set, *c.type, c.element);
      },
      [](const std::string& line) {
        Fields args(line, 1, "ipsetApply");
        std::string op = CommandOf(line, 0) == IPSET_CMD_ADD ? "add" : "delete";
        return std::make_pair(op, "element " + ElementText(args, TypeArg(args)) + " of ipset " + args.String(0, "set"));
      },
      [env](int err, const std::string& line, const std::string& op, const std::string& object) {
        return IpsetError(env, err, TypeArg(Fields(line, 1, "ipsetApply")), op, object);
      },
      [](NetlinkSocket& socket, const std::string& line, size_t index) {
        Change c = ChangeArgs(line, index);
        return Join(socket, c.cmd, c.set, *c.type, c.element);
      },
  };
  // The batch's own socket, as the worker sends on it.
  return ApplyLines(env, info[0], info[1], std::make_unique<NetlinkSocket>(env, NETLINK_NETFILTER), std::move(batch));
}

// An address of a dumped element, as text, and its family's length in bits
// (a host's prefix), told by the attribute that holds it, not by the text.
struct DumpedIp {
  std::string text;
  unsigned host_prefix;
};

// The address nested in a dumped element's attribute (IPSET_ATTR_IP, IPSET_ATTR_IP2).
DumpedIp DumpedAddress(const nlattr* nest) {
  auto a = ParseNested(nest, IPSET_ATTR_IPADDR_MAX);
  if (a[IPSET_ATTR_IPADDR_IPV4]) return {FormatAddress(AF_INET, mnl_attr_get_payload(a[IPSET_ATTR_IPADDR_IPV4])), 32};
  if (a[IPSET_ATTR_IPADDR_IPV6]) return {FormatAddress(AF_INET6, mnl_attr_get_payload(a[IPSET_ATTR_IPADDR_IPV6])), 128};
  return {"", 0};
}

// A dumped element as `ipset save` prints it: "10.96.0.10,tcp:80",
// "198.51.100.12,tcp:80,198.18.0.0/24" (a host-length prefix left out), "30080".
std::string DumpedElementText(const nlattr* data, const SetType& type) {
  auto a = ParseNested(data, IPSET_ATTR_ADT_MAX);
  std::string text;
  if (type.ip && a[IPSET_ATTR_IP]) text = DumpedAddress(a[IPSET_ATTR_IP]).text + ",";
  if (type.protocol && a[IPSET_ATTR_PROTO]) text += ProtocolName(mnl_attr_get_u8(a[IPSET_ATTR_PROTO])) + ":";
  if (type.port && a[IPSET_ATTR_PORT]) text += std::to_string(ntohs(mnl_attr_get_u16(a[IPSET_ATTR_PORT]))) + ",";
  if (type.ip2 && a[IPSET_ATTR_IP2]) {
    DumpedIp ip2 = DumpedAddress(a[IPSET_ATTR_IP2]);
    text += ip2.text;
    if (type.cidr2 && a[IPSET_ATTR_CIDR2]) {
      unsigned cidr = mnl_attr_get_u8(a[IPSET_ATTR_CIDR2]);
      if (cidr != ip2.host_prefix) text += "/" + std::to_string(cidr);
    }
    text += ",";
  }
  if (!text.empty()) text.pop_back();  // the last separator
  return text;
}

// The elements of a dumped message's IPSET_ATTR_ADT, as text, onto `texts`.
void AddDumpedElements(const nlattr* adt, const SetType& type, std::vector<std::string>& texts) {
  struct Into {
    const SetType& type;
    std::vector<std::string>& texts;
  } into{type, texts};
  mnl_attr_parse_nested(adt, [](const nlattr* data, void* arg) {
    auto* into = static_cast<Into*>(arg);
    if (mnl_attr_get_type(data) == IPSET_ATTR_DATA) into->texts.push_back(DumpedElementText(data, into->type));
    return MNL_CB_OK;
  }, &into);
}

// ipsetList(): every set of a type ipsetApply writes, as {name, entries},
// each entry as `ipset save` prints it; one dump, not a process.
Napi::Value List(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NetlinkSocket socket(env, NETLINK_NETFILTER);
  nlmsghdr* nlh = socket.Begin((NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_LIST, 0);
  PutIpsetHeader(nlh);
  // A set's first message names its type; later ones carry only more of its elements.
  std::vector<std::pair<std::string, const SetType*>> types;
  std::map<std::string, std::vector<std::string>> entries;
  socket.Dump(env, nlh, "list", "ipsets", [&](const nlmsghdr* reply) {
    auto attrs = ParseMessage(reply, sizeof(nfgenmsg), IPSET_ATTR_CMD_MAX);
    if (!attrs[IPSET_ATTR_SETNAME]) return;
    std::string name = mnl_attr_get_str(attrs[IPSET_ATTR_SETNAME]);
    if (attrs[IPSET_ATTR_TYPENAME]) types.emplace_back(name, FindType(mnl_attr_get_str(attrs[IPSET_ATTR_TYPENAME])));
    if (types.empty() || types.back().first != name || types.back().second == nullptr) return;
    const SetType& type = *types.back().second;
    if (attrs[IPSET_ATTR_ADT]) AddDumpedElements(attrs[IPSET_ATTR_ADT], type, entries[name]);
  });
  Napi::Array result = Napi::Array::New(env);
  for (const auto& [name, type] : types) {
    if (type == nullptr) continue;
    Napi::Object set = Napi::Object::New(env);
    set.Set("name", name);
    const std::vector<std::string>& texts = entries[name];
    Napi::Array list = Napi::Array::New(env, texts.size());
    for (size_t i = 0; i < texts.size(); i++) list.Set(static_cast<uint32_t>(i), texts[i]);
    set.Set("entries", list);
    result.Set(result.Length(), set);
  }
  return result;
}

}  // namespace

void ExportIpset(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "ipsetApply", Apply);
  Export(env, exports, "ipsetList", List);
}
