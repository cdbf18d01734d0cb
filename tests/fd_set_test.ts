// The descriptor bitmap behind the epoll backend's owned and claimed sets.

import { assertEquals } from "@std/assert";
import { FdSet } from "../_fd_set.ts";

Deno.test("FdSet: adds, finds and removes numbers, growing past its first words", () => {
  const set = new FdSet();
  const numbers = [0, 3, 31, 32, 1023, 1024, 70_000];
  for (const fd of numbers) set.add(fd);
  for (const fd of numbers) assertEquals(set.has(fd), true, `has ${fd}`);
  for (const fd of [1, 2, 30, 33, 1025, 69_999, 70_001, 1 << 20]) {
    assertEquals(set.has(fd), false, `lacks ${fd}`);
  }
  assertEquals(set.delete(31), true);
  assertEquals(set.delete(31), false);
  assertEquals(set.has(31), false);
  assertEquals(set.has(32), true);
});

Deno.test("FdSet: numbers beyond the bitmap (the high socket numbers) work too", () => {
  const set = new FdSet();
  const high = 0x40000000 + 5;
  set.add(high);
  assertEquals(set.has(high), true);
  assertEquals(set.has(high + 1), false);
  assertEquals(set.has(-1), false);
  assertEquals(set.delete(high), true);
  assertEquals(set.has(high), false);
  assertEquals(set.delete(high), false);
});
