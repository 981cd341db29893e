-- Runs an Argo CD health script the way Argo CD does, on Lua 5.1 (Argo CD's gopher-lua
-- implements Lua 5.1): the object as the global `obj`, only the base, table and os
-- libraries, no string methods. Reads the object as JSON on stdin and prints the
-- returned health as one JSON line: {"status": ..., "message": ...}.
--
-- Usage: lua5.1 argocd_health.lua health.lua < object.json

local script = assert(arg[1], "usage: lua5.1 argocd_health.lua HEALTH.lua < object.json")

-- JSON, decoded as Argo CD hands objects to Lua: objects and arrays become tables, null
-- becomes nil, numbers become Lua numbers.
local json_null = {}

local function decode(text)
  local pos = 1
  local value

  local function fail(what)
    error(("invalid JSON at byte %d: %s"):format(pos, what), 0)
  end
  local function skip()
    pos = text:find("[^ \t\r\n]", pos) or #text + 1
  end
  local escapes = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
  local function utf8(code)
    if code < 0x80 then
      return string.char(code)
    elseif code < 0x800 then
      return string.char(0xC0 + math.floor(code / 0x40), 0x80 + code % 0x40)
    elseif code < 0x10000 then
      return string.char(0xE0 + math.floor(code / 0x1000), 0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
    end
    return string.char(0xF0 + math.floor(code / 0x40000), 0x80 + math.floor(code / 0x1000) % 0x40,
      0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
  end
  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local c = text:sub(pos, pos)
      if c == "" then
        fail("unterminated string")
      elseif c == '"' then
        pos = pos + 1
        return table.concat(out)
      elseif c == "\\" then
        local e = text:sub(pos + 1, pos + 1)
        if e == "u" then
          local code = tonumber(text:sub(pos + 2, pos + 5), 16) or fail("bad \\u escape")
          pos = pos + 6
          -- A surrogate pair is one code point.
          if code >= 0xD800 and code < 0xDC00 and text:sub(pos, pos + 1) == "\\u" then
            local low = tonumber(text:sub(pos + 2, pos + 5), 16) or fail("bad \\u escape")
            code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
            pos = pos + 6
          end
          out[#out + 1] = utf8(code)
        else
          out[#out + 1] = escapes[e] or e
          pos = pos + 2
        end
      else
        local stop = text:find('["\\]', pos) or #text + 1
        out[#out + 1] = text:sub(pos, stop - 1)
        pos = stop
      end
    end
  end
  local function sequence(close, element)
    pos = pos + 1
    skip()
    if text:sub(pos, pos) == close then
      pos = pos + 1
      return
    end
    while true do
      element()
      skip()
      local c = text:sub(pos, pos)
      pos = pos + 1
      if c == close then
        return
      elseif c ~= "," then
        fail("expected ',' or '" .. close .. "'")
      end
    end
  end
  function value()
    skip()
    local c = text:sub(pos, pos)
    if c == "{" then
      local t = {}
      sequence("}", function()
        skip()
        if text:sub(pos, pos) ~= '"' then
          fail("expected a key")
        end
        local k = str()
        skip()
        if text:sub(pos, pos) ~= ":" then
          fail("expected ':'")
        end
        pos = pos + 1
        t[k] = value()
      end)
      return t
    elseif c == "[" then
      local t, n = {}, 0
      sequence("]", function()
        n = n + 1
        t[n] = value()
      end)
      return t
    elseif c == '"' then
      return str()
    end
    for literal, v in pairs({ ["true"] = true, ["false"] = false, ["null"] = json_null }) do
      if text:sub(pos, pos + #literal - 1) == literal then
        pos = pos + #literal
        if v == json_null then
          return nil
        end
        return v
      end
    end
    local number = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if number == nil or number == "" then
      fail("unexpected character")
    end
    pos = pos + #number
    return tonumber(number)
  end

  local result = value()
  skip()
  if pos <= #text then
    fail("trailing characters")
  end
  return result
end

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ({ ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r" })[c]
      or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

-- What Argo CD opens (util/lua/lua.go): base, table, package and a safe os (time, date).
local function sandbox(obj)
  local env = { obj = obj, table = table, os = { time = os.time, date = os.date } }
  for _, name in ipairs({ "assert", "error", "ipairs", "next", "pairs", "pcall", "print", "rawequal",
    "rawget", "rawset", "select", "setmetatable", "getmetatable", "tonumber", "tostring", "type",
    "unpack", "xpcall", "_VERSION" }) do
    env[name] = _G[name]
  end
  env._G = env
  return env
end

local obj = decode(io.read("*a"))
local chunk = assert(loadfile(script))
setfenv(chunk, sandbox(obj))
-- Without Argo CD's string library, strings have no methods: ("x"):sub(1) must fail here too.
local string_mt = getmetatable("")
local string_index = string_mt.__index
string_mt.__index = nil
local ok, hs = pcall(chunk)
string_mt.__index = string_index
if not ok then
  io.stderr:write("the health script failed: ", tostring(hs), "\n")
  os.exit(2)
end
if type(hs) ~= "table" or type(hs.status) ~= "string" then
  io.stderr:write("the health script must return a table with a status string\n")
  os.exit(2)
end
local statuses = { Healthy = true, Progressing = true, Degraded = true, Suspended = true, Missing = true, Unknown = true }
if not statuses[hs.status] then
  io.stderr:write("not a health status Argo CD knows: ", hs.status, "\n")
  os.exit(2)
end
if hs.message ~= nil and type(hs.message) ~= "string" then
  io.stderr:write("the message must be a string, got a ", type(hs.message), "\n")
  os.exit(2)
end
print('{"status": ' .. encode_string(hs.status) .. ', "message": ' .. encode_string(hs.message or "") .. "}")
