using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace RedisTestServer;

/// <summary>A certificate authority and a server certificate it signed (localhost, 127.0.0.1, ::1), made at run time
/// for a TLS redis-server in tests, as PEM files.</summary>
public static class TestCertificates
{
    /// <summary>The server certificate's file name in the directory.</summary>
    public const string CertificateFile = "redis.crt";

    /// <summary>The server key's file name in the directory.</summary>
    public const string KeyFile = "redis.key";

    /// <summary>Writes <c>ca.crt</c>, <see cref="CertificateFile"/> and <see cref="KeyFile"/> into <paramref name="directory"/>;
    /// returns the path of <c>ca.crt</c>.</summary>
    public static string Create(string directory)
    {
        var now = DateTimeOffset.UtcNow;
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=redis test CA", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        using var ca = caRequest.CreateSelfSigned(now.AddHours(-1), now.AddDays(1));

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        names.AddIpAddress(IPAddress.IPv6Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var certificate = request.Create(ca, now.AddHours(-1), now.AddDays(1), RandomNumberGenerator.GetBytes(16));

        var caPath = Path.Combine(directory, "ca.crt");
        File.WriteAllText(caPath, ca.ExportCertificatePem());
        File.WriteAllText(Path.Combine(directory, CertificateFile), certificate.ExportCertificatePem());
        File.WriteAllText(Path.Combine(directory, KeyFile), key.ExportPkcs8PrivateKeyPem());
        return caPath;
    }
}
