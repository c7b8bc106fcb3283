/*
** ef_crypto.c — the two primitives a trusted webhook needs: SHA-256 and Ed25519 verification
** (and SHA-256 of a file, for saved images' journal records),
** on OpenSSL 3's libcrypto (already in the process: libcurl's OpenSSL flavour links it).
** Verification only: editflow never holds a private key. Policy (which keys, which message,
** how fresh) is editflow.webhook's; this file answers "do these bytes match" and nothing else.
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "ef_engine.h"

int ef_sha256(const void *p, size_t n, unsigned char out[32]) {
  unsigned int len = 0;
  if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1 || len != 32)
    return -1;
  return 0;
}

/*
** The digest of a file's bytes, read in 64 KB pieces (never the whole file in memory): a saved
** image's record in the journal. -> 0 with *size set, or -1 with errno (open, read, libcrypto).
*/
int ef_sha256_file(const char *path, unsigned char out[32], long long *size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int rc = -1;
  long long total = 0;
  if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1) {
    unsigned char buf[65536];
    for (;;) {
      ssize_t got = read(fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR)
        continue;
      if (got < 0)
        break;
      if (got == 0) {
        unsigned int len = 0;
        if (EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == 32)
          rc = 0;
        else
          errno = EIO;
        break;
      }
      if (EVP_DigestUpdate(ctx, buf, (size_t)got) != 1) {
        errno = EIO;
        break;
      }
      total += got;
    }
  } else {
    errno = ENOMEM;
  }
  int saved = errno;
  EVP_MD_CTX_free(ctx);
  (void)close(fd);
  errno = saved;
  if (rc == 0)
    *size = total;
  return rc;
}

/*
** A signature of the wrong length or a key that is not 32 bytes is simply "does not verify":
** the caller got them from the network, so they are data, not misuse. -1 only when libcrypto
** itself could not do the work (out of memory).
*/
int ef_ed25519_verify(const unsigned char *pub, size_t publen, const void *msg, size_t n,
                      const unsigned char *sig, size_t siglen) {
  if (publen != 32 || siglen != 64)
    return 0;
  EVP_PKEY *key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, publen);
  if (key == NULL)
    return 0; /* not a point on the curve */
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int rc = -1;
  if (ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1)
    rc = EVP_DigestVerify(ctx, sig, siglen, msg, n) == 1 ? 1 : 0;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  return rc;
}
