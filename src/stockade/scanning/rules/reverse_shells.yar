/*
 * Reverse shells: a shell whose input and output are a network connection to the attacker.
 * Shipped with Stockade (SPEC §8). Every rule carries meta `verdict` (malicious|suspicious) and
 * `description`; the finding's rule id is `yara:<rule name>`.
 */

rule stockade_revshell_bash_dev_tcp
{
    meta:
        verdict = "malicious"
        description = "interactive shell redirected to a /dev/tcp or /dev/udp connection (bash reverse shell)"
    strings:
        $interactive = /\b(ba|z|k)?sh\s+-i\s+[0-9]?[<>]&?\s*\/dev\/(tcp|udp)\//
        $stdin_dup = /\/dev\/(tcp|udp)\/[^\s\/]{1,80}\/[0-9A-Za-z_${}]{1,12}\s+0[<>]&[12]/
        $fd_open = /\bexec\s+[0-9]{1,3}<>\s*\/dev\/(tcp|udp)\//
    condition:
        any of them
}

rule stockade_revshell_python_socket_dup2
{
    meta:
        verdict = "malicious"
        description = "Python socket connected out and made the stdin/stdout of a spawned shell (dup2, pty.spawn, Popen)"
    strings:
        $connect = /(\.connect\(\s*\(|\bcreate_connection\s*\()/
        $dup2 = /dup2\(\s*\w{1,40}\.fileno\(\)/
        $pty = "pty.spawn("
        $std_sock = /\bstd(in|out)\s*=\s*\w{1,40}\.fileno\(\)/
        $shell = /["']\/bin\/(ba|z|da|k)?sh["']/
    condition:
        $connect and ($dup2 or $std_sock) and ($pty or $shell)
}

rule stockade_revshell_netcat_exec
{
    meta:
        verdict = "malicious"
        description = "netcat handing a shell to a remote peer (nc -e /bin/sh, or a mkfifo relay)"
    strings:
        $nc_exec = /\b(nc|ncat|netcat)(\.\w{1,12})?\s[^\n|;&]{0,80}-[a-z]{0,4}[ec]\s+((\/usr)?\/bin\/)?(ba|z|da|k)?sh\b/
        $fifo_relay = /mkfifo\s+\S{1,80}[^\n]{0,120}\|\s*(\/bin\/)?(ba|z|da)?sh\s+-i[^\n]{0,120}\|\s*(nc|ncat|netcat)\s/
    condition:
        any of them
}

rule stockade_revshell_powershell_tcpclient
{
    meta:
        verdict = "malicious"
        description = "PowerShell TCPClient whose stream feeds Invoke-Expression (PowerShell reverse shell)"
    strings:
        $tcp = /Net\.Sockets\.TCPClient\b/ nocase
        $stream = ".GetStream()" nocase
        $iex1 = /\b(iex|Invoke-Expression)\b/ nocase
        $sendback = "sendback" nocase
    condition:
        $tcp and $stream and ($iex1 or $sendback)
}
