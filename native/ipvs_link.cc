// The IPVS backend's dummy interface and the ClusterIPs bound to it, over
// rtnetlink: a bound address makes its ClusterIP local, so traffic to it
// reaches IPVS in LOCAL_IN.
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>

#include <cerrno>
#include <memory>

#include "args.h"
#include "errors.h"
#include "exports.h"
#include "ipvs_netlink.h"

namespace {

// One socket for the calls on the event loop, opened in the network
// namespace of the first (kube-lb runs entirely in one).
NetlinkSocket& RouteSocket(Napi::Env env) {
  static std::unique_ptr<NetlinkSocket> socket;
  if (!socket) socket = std::make_unique<NetlinkSocket>(env, NETLINK_ROUTE);
  return *socket;
}

// linkIndex(name): the interface's index, or null when there is none.
Napi::Value LinkIndex(const Napi::CallbackInfo& info) {
  std::string name = Args(info, "linkIndex").String(0, "name");
  unsigned index = if_nametoindex(name.c_str());
  if (index == 0) return info.Env().Null();
  return Napi::Number::New(info.Env(), index);
}

// linkAddDummy(name): creates a dummy interface (left down, as kube-proxy
// leaves kube-ipvs0); fails with EEXIST when the name is taken.
void LinkAddDummy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = Args(info, "linkAddDummy").String(0, "name");
  if (name.empty() || name.size() >= IFNAMSIZ) throw Napi::TypeError::New(env, "linkAddDummy: bad interface name " + name);
  NetlinkSocket& socket = RouteSocket(env);
  nlmsghdr* nlh = socket.Begin(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
  nlattr* linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "dummy");
  mnl_attr_nest_end(nlh, linkinfo);
  try {
    socket.Request(env, nlh, "create", "dummy interface " + name);
  } catch (Napi::Error& error) {
    // Without CONFIG_DUMMY the kernel knows no "dummy" link kind.
    if (error.Get("code").ToString().Utf8Value() == "EOPNOTSUPP") {
      error.Set("message", Napi::String::New(env, error.Message() + " (the kernel has no dummy interfaces: modprobe dummy)"));
    }
    throw;
  }
}

// linkDelete(ifindex)
void LinkDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int index = Args(info, "linkDelete").Int(0, "ifindex");
  NetlinkSocket& socket = RouteSocket(env);
  nlmsghdr* nlh = socket.Begin(RTM_DELLINK, 0);
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = index;
  socket.Request(env, nlh, "delete", Numbered("ifindex", index));
}

// addressAdd(ifindex, lines, count) / addressDelete(ifindex, lines, count):
// host addresses (/32, /128), each a line "ip family", many per sendmsg,
// off the event loop (ApplyLines); resolves to each one's null or error.
// IPv6 ones skip duplicate address detection (IFA_F_NODAD), as
// kube-proxy's: a tentative address would not be usable yet.
Napi::Value WriteAddresses(const Napi::CallbackInfo& info, const char* fn, uint16_t type, uint16_t flags, const char* op) {
  Napi::Env env = info.Env();
  int index = Args(info, fn).Int(0, "ifindex");
  LineBatch batch{
      fn,
      [fn, index, type, flags](NetlinkSocket& socket, const std::string& line, size_t) {
        Fields pair(line, 0, fn);
        pair.RequireCount(2);
        Address address = ParseAddress(fn, pair.String(1, "family"), pair.String(0, "ip"));
        nlmsghdr* nlh = socket.BeginQueued(type, flags);
        auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
        ifa->ifa_family = address.af;
        ifa->ifa_prefixlen = address.af == AF_INET6 ? 128 : 32;
        ifa->ifa_scope = RT_SCOPE_UNIVERSE;
        ifa->ifa_index = index;
        if (address.af == AF_INET6) ifa->ifa_flags = IFA_F_NODAD;
        mnl_attr_put(nlh, IFA_LOCAL, address.size(), address.bytes);
        mnl_attr_put(nlh, IFA_ADDRESS, address.size(), address.bytes);
        socket.Enqueue(nlh);
      },
      [fn, index, op](const std::string& line) {
        Fields pair(line, 0, fn);
        std::string prefix = pair.String(1, "family") == "IPv6" ? "128" : "32";
        return std::make_pair(std::string(op), "address " + pair.String(0, "ip") + "/" + prefix + " on " + Numbered("ifindex", index));
      },
      nullptr,
  };
  // The batch's own socket, as the worker sends on it.
  return ApplyLines(env, info[1], info[2], std::make_unique<NetlinkSocket>(env, NETLINK_ROUTE), std::move(batch));
}

Napi::Value AddressAdd(const Napi::CallbackInfo& info) {
  return WriteAddresses(info, "addressAdd", RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, "add");
}

Napi::Value AddressDelete(const Napi::CallbackInfo& info) { return WriteAddresses(info, "addressDelete", RTM_DELADDR, 0, "delete"); }

// addressList(ifindex): the interface's global IPv4 and IPv6 addresses as {family, address}.
Napi::Value AddressList(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int index = Args(info, "addressList").Int(0, "ifindex");
  Napi::Array result = Napi::Array::New(env);
  NetlinkSocket& socket = RouteSocket(env);
  nlmsghdr* nlh = socket.Begin(RTM_GETADDR, 0);
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = AF_UNSPEC;
  socket.Dump(env, nlh, "list addresses of", Numbered("ifindex", index), [&](const nlmsghdr* reply) {
    auto* msg = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(reply));
    if (static_cast<int>(msg->ifa_index) != index || msg->ifa_scope != RT_SCOPE_UNIVERSE) return;
    if (msg->ifa_family != AF_INET && msg->ifa_family != AF_INET6) return;
    // IPv6 addresses carry only IFA_ADDRESS; IPv4 ones their own address in IFA_LOCAL.
    auto attrs = ParseMessage(reply, sizeof(ifaddrmsg), IFA_MAX);
    const nlattr* address = attrs[IFA_LOCAL] ? attrs[IFA_LOCAL] : attrs[IFA_ADDRESS];
    if (!address) return;
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("family", FamilyName(msg->ifa_family));
    entry.Set("address", FormatAddress(msg->ifa_family, mnl_attr_get_payload(address)));
    result.Set(result.Length(), entry);
  });
  return result;
}

}  // namespace

void ExportIpvsLink(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "linkIndex", LinkIndex);
  Export(env, exports, "linkAddDummy", LinkAddDummy);
  Export(env, exports, "linkDelete", LinkDelete);
  Export(env, exports, "addressAdd", AddressAdd);
  Export(env, exports, "addressDelete", AddressDelete);
  Export(env, exports, "addressList", AddressList);
}
