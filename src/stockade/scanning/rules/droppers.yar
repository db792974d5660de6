/*
 * Droppers: a program downloaded into a temporary folder, made executable and started.
 */

rule stockade_dropper_shell_tmp_exec
{
    meta:
        verdict = "malicious"
        description = "curl/wget into a temporary folder, chmod +x there and run it"
    strings:
        $download = /\b(curl|wget)\s[^\n]{0,200}(\/tmp\/|\/var\/tmp\/|\/dev\/shm\/|\$TMPDIR|\$\{TMPDIR)/
        $chmod = /\bchmod\s+(-[a-zA-Z]\s+)?([ugoa]{0,3}\+[rw]{0,2}x|[0-7]?[0-7][1357][0-7]{1,2})\s+["']?(\/tmp\/|\/var\/tmp\/|\/dev\/shm\/|\$TMPDIR|\$\{TMPDIR)/
        $run = /([;&|\n]\s*|\bnohup\s+|\bexec\s+|\b(ba)?sh\s+)["']?(\/tmp\/|\/var\/tmp\/|\/dev\/shm\/|\$TMPDIR\/|\$\{TMPDIR\}\/)[\w.\-]{1,80}/
    condition:
        $download and $chmod and $run
}

rule stockade_dropper_python_tmp_exec
{
    meta:
        verdict = "malicious"
        description = "Python downloads a file into a temporary folder, makes it executable and runs it"
    strings:
        $download = /\b(urlretrieve|urlopen|requests\.get|httpx\.get|urllib3\.request)\s*\(/
        $tmp = /(["']\/tmp\/|gettempdir\s*\(|mkstemp\s*\(|NamedTemporaryFile\s*\(|["']\/dev\/shm\/)/
        $chmod = /\bchmod\s*\([^)\n]{1,120}(0o?[0-7]?[1357][0-7]{1,2}\b|S_IX(USR|GRP|OTH)|S_IEXEC)/
        $run = /\b(subprocess\.(Popen|call|run|check_call|check_output)|os\.(system|popen|exec[lv]p?e?|spawn[lv]p?e?|startfile))\s*\(/
    condition:
        all of them
}

rule stockade_dropper_powershell_download_exec
{
    meta:
        verdict = "suspicious"
        description = "PowerShell downloads a script or program and runs it (IEX DownloadString, DownloadFile + Start-Process)"
    strings:
        $iex_dl = /\b(iex|Invoke-Expression)\s*\(?\s*\(\s*New-Object\s+(System\.)?Net\.WebClient\s*\)\s*\.DownloadString\s*\(/ nocase
        $dl_iex = /\.DownloadString\s*\([^\n|]{1,200}\|\s*(iex|Invoke-Expression)\b/ nocase
        $dl_file = /DownloadFile\s*\([^\n]{0,200}(\$env:TEMP|\$env:APPDATA|\\Temp\\|GetTempPath)/ nocase
        $start = /\b(Start-Process|saps|Invoke-Item)\b/ nocase
    condition:
        $iex_dl or $dl_iex or ($dl_file and $start)
}
