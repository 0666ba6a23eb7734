/*
 * zvm.h -- the ZeroVM program API, as zvm offers it to static x86-64 programs.
 *
 * Source compatible with ZeroVM's api/zvm.h (API version 1, manifest
 * 20130611): the trap at 0x10000 with its six functions, and the read-only
 * user manifest whose address is stored at 0xFEFFFFFC.  Build with an
 * ordinary toolchain:  musl-gcc -static -I"$(zvm sdk)" prog.c
 *
 * Every trap function returns a byte count or 0 on success and -errno on
 * failure (it never sets errno); zvm_exit does not return.
 *
 *   zvm_pread(desc, buf, size, offset)   read from channel number desc; the
 *       offset is ignored on a sequential channel.  0 at the end of the data,
 *       -EDQUOT once a read limit is reached: the read that would have seen
 *       the end counts too (a 10 byte channel with get_size 10 answers the
 *       third read of 5 bytes with -EDQUOT, not 0).
 *   zvm_pwrite(desc, buf, size, offset)  write; the offset is ignored on a
 *       sequential or appendable channel.  -EDQUOT once a write limit is
 *       reached (a sequential write-only channel whose put_size is used up
 *       answers -EINVAL, as ZeroVM's did); -EPIPE once the reader of a pipe
 *       went away (writing to it again stops the program, doc/sandbox.md).
 *   zvm_jail(buf, size)     validate the code in buf (64 KiB aligned, in the
 *       heap) and make its pages read+execute, not writable.  Whole pages are
 *       validated: pad the code to the page end with hlt (0xF4).  -EPERM if
 *       the validator refuses the code, -EINVAL for a bad buffer.
 *   zvm_unjail(buf, size)   make the pages read+write again.
 *   zvm_exit(code)          end the program; code is the report's return code.
 *   zvm_fork()              ZeroVM's daemon mode; zvm has none: returns 0.
 *
 * Channel numbers are indices in MANIFEST->channels: /dev/stdin,
 * /dev/stdout, /dev/stderr, then the other channels by name.
 */
#ifndef ZVM_API_H__
#define ZVM_API_H__ 1

#include <stdint.h>

/* access types of a channel */
enum ChannelType {
  SGetSPut,   /* sequential read, sequential write */
  RGetSPut,   /* random read, sequential (appending) write */
  SGetRPut,   /* sequential read, random write */
  RGetRPut    /* random read, random write */
};

/* indices of ZVMChannel.limits */
enum IOLimits {
  GetsLimit,      /* read calls */
  GetSizeLimit,   /* bytes read */
  PutsLimit,      /* write calls */
  PutSizeLimit,   /* bytes written */
  IOLimitsCount
};

/* trap function codes: the names in ASCII, little endian */
enum TrapCalls {
  TrapRead = 0x64616552,     /* "Read" */
  TrapWrite = 0x74697257,    /* "Writ" */
  TrapJail = 0x6c69614a,     /* "Jail" */
  TrapUnjail = 0x6c6a6e55,   /* "Unjl" */
  TrapExit = 0x74697845,     /* "Exit" */
  TrapFork = 0x6b726f46      /* "Fork" */
};

/* one channel of the user manifest */
struct ZVMChannel {
  int64_t limits[IOLimitsCount];
  int64_t size;               /* bytes at the start; 0 for sequential channels */
  enum ChannelType type;
  char *name;                 /* the alias, e.g. "/dev/input" */
};

/* the user manifest: read-only, laid out below the stack */
struct UserManifest {
  void *heap_ptr;             /* the heap: the initial program break */
  uint32_t heap_size;
  uint32_t stack_size;
  int32_t channels_count;
  struct ZVMChannel *channels;
};

/* the user manifest's address is a 32-bit value at 0xFEFFFFFC */
#define MANIFEST \
  ((const struct UserManifest *)(uintptr_t)*(const volatile uint32_t *)0xFEFFFFFCu)

/* the trap: call it through a pointer (an indirect call) */
#define TRAP ((int32_t (*)(uint64_t *))0x10000)

#define zvm_pread(desc, buffer, size, offset) \
  TRAP((uint64_t[]){TrapRead, 0, (desc), (uintptr_t)(buffer), (size), (offset)})
#define zvm_pwrite(desc, buffer, size, offset) \
  TRAP((uint64_t[]){TrapWrite, 0, (desc), (uintptr_t)(buffer), (size), (offset)})
#define zvm_jail(buffer, size) \
  TRAP((uint64_t[]){TrapJail, 0, (uintptr_t)(buffer), (size)})
#define zvm_unjail(buffer, size) \
  TRAP((uint64_t[]){TrapUnjail, 0, (uintptr_t)(buffer), (size)})
#define zvm_exit(code) TRAP((uint64_t[]){TrapExit, 0, (code)})
#define zvm_fork() TRAP((uint64_t[]){TrapFork})

#endif /* ZVM_API_H__ */
