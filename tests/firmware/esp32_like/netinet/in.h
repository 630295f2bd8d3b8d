#pragma once
// For the ESP32-like compile check (../README.md); lwIP's layout.
#include <stdint.h>
#include <sys/socket.h>
#ifdef __cplusplus
extern "C" {
#endif
typedef uint32_t in_addr_t;
typedef uint16_t in_port_t;
struct in_addr {
  in_addr_t s_addr;
};
struct in6_addr {
  union {
    uint32_t u32_addr[4];
    uint8_t u8_addr[16];
  } un;
#define s6_addr un.u8_addr
};
struct sockaddr_in {
  uint8_t sin_len;
  sa_family_t sin_family;
  in_port_t sin_port;
  struct in_addr sin_addr;
  char sin_zero[8];
};
struct sockaddr_in6 {
  uint8_t sin6_len;
  sa_family_t sin6_family;
  in_port_t sin6_port;
  uint32_t sin6_flowinfo;
  struct in6_addr sin6_addr;
  uint32_t sin6_scope_id;
};
#define INADDR_ANY ((in_addr_t) 0x00000000UL)
#define INADDR_NONE ((in_addr_t) 0xFFFFFFFFUL)
#define INADDR_LOOPBACK ((in_addr_t) 0x7F000001UL)
#define IPPROTO_IP 0
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_IPV6 41
#define IP_TOS 1
#define IP_MULTICAST_TTL 5
#define IP_MULTICAST_IF 6
#define IP_MULTICAST_LOOP 7
#define IP_ADD_MEMBERSHIP 3
#define IPV6_V6ONLY 27
#define INET_ADDRSTRLEN 16
#define INET6_ADDRSTRLEN 46
struct ip_mreq {
  struct in_addr imr_multiaddr;
  struct in_addr imr_interface;
};
uint16_t htons(uint16_t n);
uint16_t ntohs(uint16_t n);
uint32_t htonl(uint32_t n);
uint32_t ntohl(uint32_t n);
#ifdef __cplusplus
}
#endif
