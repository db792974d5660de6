/*
 * Obfuscated Python: code hidden in an encoded blob and executed.
 */

rule stockade_obfuscated_exec_decoded
{
    meta:
        verdict = "malicious"
        description = "exec/eval of data decoded in place (base64, hex, zlib, codecs)"
    strings:
        $decode = /\b(exec|eval)\s*\(\s*(compile\s*\(\s*)?(__import__\(\s*['"]\w{1,12}['"]\s*\)\.|\w{1,20}\.){0,3}(b64decode|b32decode|b16decode|b85decode|a85decode|decodebytes|decodestring|unhexlify|a2b_base64|fromhex|decompress)\s*\(/
        $codecs = /\b(exec|eval)\s*\(\s*(__import__\(\s*['"]codecs['"]\s*\)\.|codecs\.)decode\s*\(/
    condition:
        any of them
}

rule stockade_obfuscated_exec_chr_join
{
    meta:
        verdict = "malicious"
        description = "exec/eval of a string rebuilt character by character (''.join(chr(...)))"
    strings:
        $join = /\b(exec|eval)\s*\(\s*(str\s*\(\s*)?(''|"")\s*\.join\s*\(\s*[\[(]?\s*(map\s*\(\s*chr\b|chr\s*\()/
        $bytes = /\b(exec|eval)\s*\(\s*bytes\s*\(\s*\[\s*[0-9]{1,3}\s*,\s*[0-9]{1,3}\s*,/
    condition:
        any of them
}

rule stockade_obfuscated_marshal_loads
{
    meta:
        verdict = "malicious"
        description = "code object unmarshalled from embedded or decoded data and executed"
    strings:
        $exec = /\b(exec|eval)\s*\(\s*(__import__\(\s*['"]marshal['"]\s*\)\.|marshal\.)loads\s*\(/
        $decoded = /marshal\.loads\s*\(\s*(\w{1,20}\.){0,2}(decompress|b64decode|b85decode|b32decode|unhexlify|fromhex|decodebytes)\s*\(/
        $function = /FunctionType\s*\(\s*(__import__\(\s*['"]marshal['"]\s*\)\.|marshal\.)loads\s*\(/
    condition:
        any of them
}

rule stockade_obfuscated_encoded_blob_exec
{
    meta:
        verdict = "suspicious"
        description = "a long encoded blob (base64, base85, hex) decoded and, elsewhere in the file, something executed"
    strings:
        $blob64 = /(b64decode|b85decode|b32decode|decodebytes|a2b_base64)\s*\(\s*b?['"][A-Za-z0-9+\/=_\-]{400}/
        $blobhex = /(unhexlify|fromhex)\s*\(\s*b?['"][0-9a-fA-F]{400}/
        $escaped = /(\\x[0-9a-fA-F]{2}){200}/
        $exec = /\b(exec|eval)\s*\(/
    condition:
        $exec and any of ($blob64, $blobhex, $escaped)
}
