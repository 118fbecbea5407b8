"""The generic half of wireshark/lotc.lua: a Lua interpreter of layout tables.

protocol/luagen.py writes the data (value strings, ProtoFields, one layout
table per message type); this Lua walks a layout over a frame's bytes. It knows
the header's role (magic, version, type, request id, body length) and the field
kinds of protocol/walk.py, never a message: nothing here changes when a message
is added to the spec.

A layout node is a table: n = name, k = kind (walk.Kind values), f = ProtoField,
w = size (fixed kinds) or prefix size (string, blob, array), m = minimum wire
size, vs/en = value strings and enum name, bits = {mask, ProtoField, name} per
flag, v = expected constant, s = goes into the info column, e = array element,
c = struct children.

It never raises a Lua error on bad input: every read is bounds-checked first
(`fits`), and whatever is wrong becomes expert info and a tag in the info
column. Lua 5.2 (Wireshark 4.0): bit32, no `//`.
"""
from __future__ import annotations

RUNTIME = r'''
-- ---------------------------------------------------------------- generic runtime
-- Everything below is the same for every message: it walks the layout tables above.

local G, S = expert.group, expert.severity
local EX = {
    bad_magic = ProtoExpert.new("lotc.expert.bad_magic",
        "Bad magic: not a LOTC frame, or a lost frame boundary", G.MALFORMED, S.ERROR),
    version = ProtoExpert.new("lotc.expert.version", "Unsupported protocol version",
        G.PROTOCOL, S.WARN),
    oversize = ProtoExpert.new("lotc.expert.oversize",
        "Body longer than the maximum frame size", G.MALFORMED, S.ERROR),
    truncated = ProtoExpert.new("lotc.expert.truncated",
        "Truncated body: a field runs past the end of the body", G.MALFORMED, S.ERROR),
    trailing = ProtoExpert.new("lotc.expert.trailing_bytes",
        "Trailing bytes after the last field of the body", G.MALFORMED, S.ERROR),
    unknown_enum = ProtoExpert.new("lotc.expert.unknown_enum",
        "Value outside its enum (unknown message type, code or state)", G.MALFORMED, S.ERROR),
    bad_bool = ProtoExpert.new("lotc.expert.bad_bool", "Boolean byte other than 0 or 1",
        G.MALFORMED, S.ERROR),
}
lotc.experts = {EX.bad_magic, EX.version, EX.oversize, EX.truncated, EX.trailing,
                EX.unknown_enum, EX.bad_bool}

local field_list = {}
for _, f in pairs(F) do field_list[#field_list + 1] = f end
lotc.fields = field_list

local function read_uint(tvb, off, w)
    if w == 8 then return tvb:range(off, 8):uint64():tonumber() end
    return tvb:range(off, w):uint()
end

-- Expert info on `tree`, and a short tag for the info column.
local function problem(ctx, tree, ex, tag, text)
    tree:add_proto_expert_info(ex, text)
    ctx.problems[#ctx.problems + 1] = tag
end

local function fits(ctx, tree, off, n, node)
    if off + n <= ctx.limit then return true end
    problem(ctx, tree, EX.truncated, "truncated body", string.format(
        "truncated body: %s needs %d bytes at offset %d, the body ends at %d",
        node.n, n, off, ctx.limit))
    return false
end

-- Info column text of a string: shortened on a UTF-8 boundary, quoted when it has spaces.
local function shorten(text)
    if #text > 40 then
        local cut = 37
        while cut > 0 and bit32.band(text:byte(cut + 1), 0xC0) == 0x80 do cut = cut - 1 end
        text = text:sub(1, cut) .. "..."
    end
    if text:find('[%s"]') then text = '"' .. (text:gsub('"', '\\"')) .. '"' end
    return text
end

local function note(ctx, node, text, bare)
    if not node.s then return end
    if bare then
        ctx.summary[#ctx.summary + 1] = text
    else
        ctx.summary[#ctx.summary + 1] = node.n .. "=" .. text
    end
end

local KIND = {}
local dissect

function KIND.uint(ctx, tree, node, off)
    local range = ctx.tvb:range(off, node.w)
    tree:add(node.f, range)
    if node.s then
        local value
        if node.k == "sint" then
            value = node.w == 8 and range:int64() or range:int()
        else
            value = node.w == 8 and range:uint64() or range:uint()
        end
        note(ctx, node, tostring(value))
    end
    return off + node.w
end
KIND.sint = KIND.uint

function KIND.float(ctx, tree, node, off)
    local range = ctx.tvb:range(off, node.w)
    tree:add(node.f, range)
    note(ctx, node, string.format("%g", range:float()))
    return off + node.w
end

function KIND.bool(ctx, tree, node, off)
    local range = ctx.tvb:range(off, 1)
    local item = tree:add(node.f, range)
    local value = range:uint()
    if value > 1 then
        problem(ctx, item, EX.bad_bool, "bad bool",
            string.format("%s: byte %d is neither 0 nor 1", node.n, value))
    end
    note(ctx, node, value == 0 and "false" or "true")
    return off + 1
end

function KIND.enum(ctx, tree, node, off)
    local range = ctx.tvb:range(off, node.w)
    local item = tree:add(node.f, range)
    local value = range:uint()
    local name = node.vs[value]
    if name == nil then
        problem(ctx, item, EX.unknown_enum, "unknown " .. node.en,
            string.format("%s: %d is not a %s value", node.n, value, node.en))
        name = tostring(value)
    end
    note(ctx, node, name, true)
    return off + node.w
end

function KIND.flags(ctx, tree, node, off)
    local range = ctx.tvb:range(off, node.w)
    local item = tree:add(node.f, range)
    local value, set = range:uint(), {}
    for _, bit in ipairs(node.bits) do
        item:add(bit[2], range)
        if bit32.band(value, bit[1]) ~= 0 then set[#set + 1] = bit[3] end
    end
    if #set > 0 then note(ctx, node, table.concat(set, ","), true) end
    return off + node.w
end

function KIND.const(ctx, tree, node, off)
    tree:add(node.f, ctx.tvb:range(off, node.w))
    return off + node.w
end
KIND.bytes = KIND.const

-- A length-prefixed part: checks the prefix and the data fit, returns the data length.
local function prefixed(ctx, tree, node, off)
    if not fits(ctx, tree, off, node.w, node) then return nil end
    local len = read_uint(ctx.tvb, off, node.w)
    if not fits(ctx, tree, off, node.w + len, node) then return nil end
    return len
end

function KIND.string(ctx, tree, node, off)
    local len = prefixed(ctx, tree, node, off)
    if len == nil then return nil end
    local text = ""
    if len > 0 then text = ctx.tvb:range(off + node.w, len):string(ENC_UTF_8) end
    tree:add(node.f, ctx.tvb:range(off, node.w + len), text)
    if text ~= "" then note(ctx, node, shorten(text)) end
    return off + node.w + len
end

function KIND.blob(ctx, tree, node, off)
    local len = prefixed(ctx, tree, node, off)
    if len == nil then return nil end
    -- The item covers the data only; an empty blob gets an empty range after its prefix.
    tree:add(node.f, ctx.tvb:range(off + node.w, len))
    note(ctx, node, string.format("%d bytes", len))
    return off + node.w + len
end

function KIND.array(ctx, tree, node, off)
    if not fits(ctx, tree, off, node.w, node) then return nil end
    local count = read_uint(ctx.tvb, off, node.w)
    local item = tree:add(node.f, ctx.tvb:range(off, node.w), count)
    item:append_text(count == 1 and " item" or " items")
    note(ctx, node, tostring(count))
    -- Refuse an impossible count up front instead of looping over it.
    if not fits(ctx, item, off + node.w, count * node.e.m, node) then return nil end
    local start = off
    off = off + node.w
    for i = 1, count do
        off = dissect(ctx, item, node.e, off, i - 1)
        if off == nil then return nil end
    end
    item:set_len(off - start)
    return off
end

function KIND.struct(ctx, tree, node, off, index)
    if not fits(ctx, tree, off, node.m, node) then return nil end
    local item = tree:add(node.f, ctx.tvb:range(off, node.m))
    if index ~= nil then item:append_text(string.format(" [%d]", index)) end
    local start = off
    for _, child in ipairs(node.c) do
        off = dissect(ctx, item, child, off)
        if off == nil then return nil end
    end
    item:set_len(off - start)
    return off
end

local FIXED = {uint = true, sint = true, float = true, bool = true, enum = true,
               flags = true, const = true, bytes = true}

dissect = function(ctx, tree, node, off, index)
    if FIXED[node.k] and not fits(ctx, tree, off, node.w, node) then return nil end
    return KIND[node.k](ctx, tree, node, off, index)
end

-- ---------------------------------------------------------------- frames

local function add_rest(ctx, tree, field, off)
    if off < ctx.tvb:len() then tree:add(F[field], ctx.tvb:range(off)) end
end

local function dissect_body(ctx, root, mtype, body_len)
    if body_len > MAX_BODY then
        problem(ctx, root, EX.oversize, "oversize", string.format(
            "body of %d bytes exceeds the limit of %d: the rest of the segment is not dissected",
            body_len, MAX_BODY))
        add_rest(ctx, root, DATA_FIELD, HEADER_SIZE)
        return
    end
    ctx.limit = HEADER_SIZE + body_len
    local body = BODIES[mtype]
    if body == nil then  -- the header's type field already carries the expert info
        add_rest(ctx, root, DATA_FIELD, HEADER_SIZE)
        return
    end
    local off = dissect(ctx, root, body, HEADER_SIZE)
    if off ~= nil and off < ctx.limit then
        problem(ctx, root, EX.trailing, "trailing bytes", string.format(
            "%d bytes after the last field of the body", ctx.limit - off))
        add_rest(ctx, root, TRAILING_FIELD, off)
    end
end

local function dissect_frame(ctx, root)
    local tvb = ctx.tvb
    local mtype = read_uint(tvb, OFF_TYPE, W_TYPE)
    local request_id = read_uint(tvb, OFF_REQUEST_ID, W_REQUEST_ID)
    local version = read_uint(tvb, OFF_VERSION, W_VERSION)
    ctx.limit = HEADER_SIZE
    dissect(ctx, root, HEADER, 0)
    local header_notes = ctx.summary
    ctx.summary = {}
    if version ~= VERSION then
        problem(ctx, root, EX.version, "version " .. version, string.format(
            "protocol version %d; this dissector knows version %d", version, VERSION))
    end
    dissect_body(ctx, root, mtype, read_uint(tvb, OFF_LENGTH, W_LENGTH))
    local parts = {VS.MessageType[mtype] or string.format("type %d", mtype)}
    if request_id ~= 0 then parts[#parts + 1] = "req=" .. request_id end
    for _, list in ipairs({ctx.summary, header_notes}) do
        for _, text in ipairs(list) do parts[#parts + 1] = text end
    end
    return table.concat(parts, " ")
end

local function bad_magic(ctx, root)
    local tvb = ctx.tvb
    local shown = tvb:range(0, math.min(MAGIC_SIZE, tvb:len())):bytes():tohex()
    problem(ctx, root, EX.bad_magic, "bad magic", string.format(
        "bad magic 0x%s, expected 0x%x: not a LOTC frame, or a lost frame boundary", shown, MAGIC))
    add_rest(ctx, root, DATA_FIELD, 0)
    return string.format("not LOTC (%d bytes)", tvb:len())
end

-- The info column: the first frame of a packet sets it, the next ones append.
local function set_info(pinfo, text)
    local count = tonumber(pinfo.private.lotc_frames or "0")
    if count == 0 then
        pinfo.cols.info:set(text)
    else
        pinfo.cols.info:append(", " .. text)
    end
    pinfo.private.lotc_frames = tostring(count + 1)
end

local function dissect_pdu(tvb, pinfo, tree)
    pinfo.cols.protocol:set("LOTC")
    local len = tvb:len()
    local root = tree:add(lotc, tvb:range(0, len))
    local ctx = {tvb = tvb, limit = len, summary = {}, problems = {}}
    local info
    if len < HEADER_SIZE or read_uint(tvb, 0, MAGIC_SIZE) ~= MAGIC then
        info = bad_magic(ctx, root)
    else
        info = dissect_frame(ctx, root)
    end
    for _, tag in ipairs(ctx.problems) do info = info .. " [" .. tag .. "]" end
    root:append_text(", " .. info)
    set_info(pinfo, info)
    return len
end

-- Length of the frame starting at `offset`. A frame that cannot be delimited
-- (bad magic, oversize) takes the rest of the segment, so reassembly never
-- waits for bytes that will not come.
local function frame_length(tvb, pinfo, offset)
    local rest = tvb:len() - offset
    if read_uint(tvb, offset, MAGIC_SIZE) ~= MAGIC then return rest end
    local body_len = read_uint(tvb, offset + OFF_LENGTH, W_LENGTH)
    if body_len > MAX_BODY then return rest end
    return HEADER_SIZE + body_len
end

function lotc.dissector(tvb, pinfo, tree)
    dissect_tcp_pdus(tvb, tree, HEADER_SIZE, frame_length, dissect_pdu)
    return tvb:len()
end

local tcp_port = DissectorTable.get("tcp.port")
for _, port in ipairs(PORTS) do tcp_port:add(port, lotc) end
tcp_port:add_for_decode_as(lotc)
'''
