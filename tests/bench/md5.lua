-- MD5 (RFC 1321) for wrk's LuaJIT, on the `bit` library: 32-bit words, little-endian, additions
-- folded back to 32 bits with bit.tobit. Returns lower-case hex, as HTTP Digest wants.
local bit = require("bit")
local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local lshift, rol, tobit, bswap, tohex = bit.lshift, bit.rol, bit.tobit, bit.bswap, bit.tohex
local byte, char, rep = string.byte, string.char, string.rep
local floor, abs, sin = math.floor, math.abs, math.sin

local K, S = {}, {}
for i = 0, 63 do
   K[i] = tobit(floor(abs(sin(i + 1)) * 4294967296))
end
local shifts = { { 7, 12, 17, 22 }, { 5, 9, 14, 20 }, { 4, 11, 16, 23 }, { 6, 10, 15, 21 } }
for i = 0, 63 do
   S[i] = shifts[floor(i / 16) + 1][i % 4 + 1]
end

local function md5(msg)
   local len = #msg
   -- Padding: 0x80, zeros to 56 mod 64, then the bit length as 64-bit little-endian.
   local bits = len * 8
   local tail = { char(0x80), rep("\0", (55 - len) % 64) }
   for i = 0, 7 do
      tail[#tail + 1] = char(floor(bits / 2 ^ (8 * i)) % 256)
   end
   msg = msg .. table.concat(tail)

   local a0, b0, c0, d0 = tobit(0x67452301), tobit(0xefcdab89), tobit(0x98badcfe), tobit(0x10325476)
   local M = {}
   for chunk = 1, #msg, 64 do
      for j = 0, 15 do
         local p = chunk + j * 4
         local b1, b2, b3, b4 = byte(msg, p, p + 3)
         M[j] = bor(b1, lshift(b2, 8), lshift(b3, 16), lshift(b4, 24))
      end
      local A, B, C, D = a0, b0, c0, d0
      for i = 0, 63 do
         local F, g
         if i < 16 then
            F, g = bor(band(B, C), band(bnot(B), D)), i
         elseif i < 32 then
            F, g = bor(band(D, B), band(bnot(D), C)), (5 * i + 1) % 16
         elseif i < 48 then
            F, g = bxor(B, C, D), (3 * i + 5) % 16
         else
            F, g = bxor(C, bor(B, bnot(D))), (7 * i) % 16
         end
         F = tobit(F + A + K[i] + M[g])
         A, D, C = D, C, B
         B = tobit(B + rol(F, S[i]))
      end
      a0, b0, c0, d0 = tobit(a0 + A), tobit(b0 + B), tobit(c0 + C), tobit(d0 + D)
   end
   return tohex(bswap(a0)) .. tohex(bswap(b0)) .. tohex(bswap(c0)) .. tohex(bswap(d0))
end

return md5
