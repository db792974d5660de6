/*
 * Crypto-currency miners: stratum pool URLs, xmrig configurations, well-known pool hosts.
 */

rule stockade_miner_stratum_url
{
    meta:
        verdict = "malicious"
        description = "a stratum mining pool URL (stratum+tcp://, stratum+ssl://)"
    strings:
        $stratum = /stratum\+(tcp|ssl|tls|udp):\/\/[A-Za-z0-9]/ nocase
    condition:
        $stratum
}

rule stockade_miner_xmrig_config
{
    meta:
        verdict = "malicious"
        description = "an xmrig miner configuration or command line (donate level, pools, RandomX)"
    strings:
        $donate = /["-]donate-level["=\s:]/
        $pools = /"pools"\s*:\s*\[/
        $randomx = /"randomx"\s*:\s*\{/
        $rig = /"rig-id"\s*:/
        $nicehash = /"nicehash"\s*:\s*(true|false)/
        $xmrig = "xmrig" nocase
        $coin = /"coin"\s*:\s*"(monero|xmr)"/ nocase
    condition:
        ($donate and ($xmrig or $pools)) or 3 of ($pools, $randomx, $rig, $nicehash, $coin)
}

rule stockade_miner_pool_host
{
    meta:
        verdict = "suspicious"
        description = "the host name of a well-known crypto-currency mining pool"
    strings:
        $h1 = "supportxmr.com" nocase
        $h2 = "minexmr.com" nocase
        $h3 = "xmrpool.eu" nocase
        $h4 = "moneroocean.stream" nocase
        $h5 = "minergate.com" nocase
        $h6 = "nanopool.org" nocase
        $h7 = "hashvault.pro" nocase
        $h8 = "c3pool.com" nocase
        $h9 = "herominers.com" nocase
        $h10 = "unmineable.com" nocase
        $h11 = "2miners.com" nocase
        $h12 = "f2pool.com" nocase
        $h13 = "ethermine.org" nocase
        $h14 = "nicehash.com" nocase
        $h15 = "xmrig.com" nocase
    condition:
        any of them
}
